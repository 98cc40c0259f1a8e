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
WITH team_plan_days_numbered AS (
    SELECT team_id, quarter, plan_id, day,
           day - CAST(ROW_NUMBER() OVER (PARTITION BY team_id, quarter, plan_id
                                         ORDER BY day) AS INTEGER) AS run_key
    FROM team_plan_days
),

team_plan_spans AS (
    -- runs of consecutive days within one quarter under one plan (or under none)
    SELECT team_id, quarter, plan_id, MIN(day) AS first_day, MAX(day) AS last_day
    FROM team_plan_days_numbered
    GROUP BY team_id, quarter, plan_id, run_key
),

owner_spans_with_team AS (
    SELECT o.customer_id, o.rep_id, r.team_id, o.first_day, o.last_day
    FROM customer_owner_spans AS o
    JOIN reps AS r ON r.rep_id = o.rep_id
),

episode_days AS (
    SELECT o.customer_id,
           o.rep_id,
           o.team_id,
           s.quarter,
           s.plan_id,
           GREATEST(o.first_day, s.first_day) AS first_day,
           LEAST(o.last_day, s.last_day) AS last_day
    FROM owner_spans_with_team AS o
    JOIN team_plan_spans AS s
      ON s.team_id = o.team_id
     AND s.first_day <= o.last_day
     AND o.first_day <= s.last_day
)

SELECT e.customer_id,
       e.rep_id,
       e.team_id,
       e.first_day - ch.acquired_date AS "start",
       e.last_day - ch.acquired_date + 1 AS "stop",
       CASE WHEN e.last_day = ch.churn_date THEN 1 ELSE 0 END AS event,
       e.quarter,
       e.plan_id,
       p.w_revenue,
       p.w_new_customers,
       p.w_collection,
       p.w_satisfaction,
       p.w_complaints,
       p.w_process,
       cu.segment,
       e.first_day,
       e.last_day
FROM episode_days AS e
JOIN customer_churn AS ch ON ch.customer_id = e.customer_id
JOIN customers AS cu ON cu.customer_id = e.customer_id
LEFT JOIN kpi_plans AS p ON p.plan_id = e.plan_id
ORDER BY e.customer_id, e.first_day
