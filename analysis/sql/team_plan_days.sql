-- team_plan_days: the plan each team works under on each day of the analysed span.
--
-- One row per team x day from $first_day (first day of the first analysed quarter)
-- through $as_of (last day of the analysed quarter). plan_id and the weights are NULL
-- on days without a plan. An assignment is in force on day d when
-- valid_from <= d <= coalesce(valid_to, as_of).
-- The contract allows at most one plan per team and day; should assignments overlap
-- anyway, the latest valid_from wins (then the smallest plan_id) and plans_in_force
-- says how many there were, for the diagnostics.
WITH calendar AS (
    SELECT CAST(CAST($first_day AS DATE) + CAST(g.i AS INTEGER) AS DATE) AS day
    FROM generate_series(0, CAST($as_of AS DATE) - CAST($first_day AS DATE)) AS g(i)
),

calendar_with_quarter AS (
    SELECT c.day, q.quarter
    FROM calendar AS c
    JOIN quarters AS q ON c.day BETWEEN q.q_start AND q.q_end
),

teams AS (
    SELECT team_id FROM reps
    UNION
    SELECT team_id FROM plan_assignments
),

assignments_in_force AS (
    SELECT t.team_id,
           cq.day,
           cq.quarter,
           pa.plan_id,
           COUNT(pa.plan_id) OVER (PARTITION BY t.team_id, cq.day) AS plans_in_force,
           ROW_NUMBER() OVER (PARTITION BY t.team_id, cq.day
                              ORDER BY pa.valid_from DESC, pa.plan_id) AS priority
    FROM teams AS t
    CROSS JOIN calendar_with_quarter AS cq
    LEFT JOIN plan_assignments AS pa
           ON pa.team_id = t.team_id
          AND pa.valid_from <= cq.day
          AND cq.day <= COALESCE(pa.valid_to, CAST($as_of AS DATE))
)

SELECT a.team_id,
       a.day,
       a.quarter,
       a.plan_id,
       a.plans_in_force,
       p.w_revenue,
       p.w_new_customers,
       p.w_collection,
       p.w_satisfaction,
       p.w_complaints,
       p.w_process
FROM assignments_in_force AS a
LEFT JOIN kpi_plans AS p ON p.plan_id = a.plan_id
WHERE a.priority = 1
