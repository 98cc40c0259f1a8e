-- survival_episodes: customer episodes (start, stop] on the tenure axis, split wherever
-- the owning rep, the owning team's plan or the calendar quarter changes.
--
-- Tenure: day d occupies (d - acquired_date, d - acquired_date + 1], so an episode
-- covering days first_day..last_day is (first_day - acquired, last_day - acquired + 1]
-- and start < stop always. A churn on day c (cancel_date, or end_date of the final
-- churned contract) is an event at stop = c - acquired_date + 1, on the episode whose
-- last day is c. Without churn the last episode ends at the as-of date or at the end of
-- the last contract coverage, event 0. Days without coverage are not at risk.
-- Needs: team_plan_days, customer_churn, customer_owner_spans.
WITH team_days AS (
    SELECT DISTINCT team_id FROM team_plan_days
),

plan_breaks AS (
    -- days on which a team's plan or quarter may change: the first analysed day, each
    -- quarter start, each assignment's first day and the day after its last
    SELECT t.team_id, q.q_start AS break_day
    FROM team_days AS t
    CROSS JOIN quarters AS q
    UNION
    SELECT team_id, valid_from FROM plan_assignments
    WHERE valid_from > CAST($first_day AS DATE) AND valid_from <= CAST($as_of AS DATE)
    UNION
    SELECT team_id, COALESCE(valid_to, CAST($as_of AS DATE)) + 1 FROM plan_assignments
    WHERE COALESCE(valid_to, CAST($as_of AS DATE)) + 1 > CAST($first_day AS DATE)
      AND COALESCE(valid_to, CAST($as_of AS DATE)) + 1 <= CAST($as_of AS DATE)
),

plan_segments AS (
    -- between two consecutive breaks a team works under one plan in one quarter
    SELECT team_id,
           break_day AS seg_first,
           COALESCE(LEAD(break_day) OVER (PARTITION BY team_id ORDER BY break_day) - 1,
                    CAST($as_of AS DATE)) AS seg_last
    FROM plan_breaks
),

plan_segments_with_plan AS (
    SELECT s.team_id, d.quarter, d.plan_id, s.seg_first, s.seg_last
    FROM plan_segments AS s
    JOIN team_plan_days AS d ON d.team_id = s.team_id AND d.day = s.seg_first
),

plan_runs AS (
    -- consecutive segments of one quarter and plan form a run (as in customer_owner_spans)
    SELECT team_id, quarter, plan_id, seg_first, seg_last,
           seg_last + 1 - CAST(SUM(seg_last - seg_first + 1) OVER (
               PARTITION BY team_id, quarter, plan_id ORDER BY seg_first
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS INTEGER) AS run_key
    FROM plan_segments_with_plan
),

team_plan_spans AS (
    -- maximal runs of consecutive days within one quarter under one plan (or none)
    SELECT r.team_id, r.quarter, r.plan_id, MIN(r.seg_first) AS first_day,
           MAX(r.seg_last) AS last_day
    FROM plan_runs AS r
    GROUP BY r.team_id, r.quarter, r.plan_id, r.run_key
),

team_plan_spans_with_weights AS (
    SELECT s.team_id, s.quarter, s.plan_id, s.first_day, s.last_day,
           p.w_revenue, p.w_new_customers, p.w_collection, p.w_satisfaction,
           p.w_complaints, p.w_process
    FROM team_plan_spans AS s
    LEFT JOIN kpi_plans AS p ON p.plan_id = s.plan_id
),

owner_spans_with_customer AS (
    SELECT o.customer_id, o.rep_id, r.team_id, o.first_day, o.last_day,
           ch.acquired_date, ch.churn_date, cu.segment
    FROM customer_owner_spans AS o
    JOIN reps AS r ON r.rep_id = o.rep_id
    JOIN customer_churn AS ch ON ch.customer_id = o.customer_id
    JOIN customers AS cu ON cu.customer_id = o.customer_id
),

episode_days AS (
    SELECT o.customer_id,
           o.rep_id,
           o.team_id,
           o.acquired_date,
           o.churn_date,
           o.segment,
           s.quarter,
           s.plan_id,
           s.w_revenue,
           s.w_new_customers,
           s.w_collection,
           s.w_satisfaction,
           s.w_complaints,
           s.w_process,
           GREATEST(o.first_day, s.first_day) AS first_day,
           LEAST(o.last_day, s.last_day) AS last_day
    FROM owner_spans_with_customer AS o
    JOIN team_plan_spans_with_weights AS s
      ON s.team_id = o.team_id
     AND s.first_day <= o.last_day
     AND o.first_day <= s.last_day
)

SELECT customer_id,
       rep_id,
       team_id,
       first_day - acquired_date AS "start",
       last_day - acquired_date + 1 AS "stop",
       CASE WHEN last_day = churn_date THEN 1 ELSE 0 END AS event,
       quarter,
       plan_id,
       w_revenue,
       w_new_customers,
       w_collection,
       w_satisfaction,
       w_complaints,
       w_process,
       segment,
       first_day,
       last_day
FROM episode_days
ORDER BY customer_id, first_day
