-- renewal_table: one row per renewal decision: a contract whose scheduled end_date is on
-- or before $as_of and that was not cancelled (a cancellation is churn, not a renewal
-- decision). 'pending' outcomes cannot occur here under the contract; they are left
-- out and counted in the diagnostics.
-- Needs: team_plan_days.
WITH renewal_decisions AS (
    SELECT contract_id, customer_id, rep_id, end_date, annual_value, outcome,
           -- q_key = 4 * year + quarter - 1: equality join to `quarters`
           CAST(EXTRACT(YEAR FROM end_date) AS INTEGER) * 4
               + CAST(EXTRACT(QUARTER FROM end_date) AS INTEGER) - 1 AS q_key
    FROM contracts
    WHERE end_date <= CAST($as_of AS DATE)
      AND cancel_date IS NULL
      AND outcome <> 'pending'
)

SELECT rd.contract_id,
       rd.customer_id,
       rd.rep_id,
       r.team_id,
       rd.end_date,
       q.quarter AS end_quarter,
       CASE WHEN rd.outcome = 'renewed' THEN 1 ELSE 0 END AS renewed,
       tp.plan_id,
       tp.w_revenue,
       tp.w_new_customers,
       tp.w_collection,
       tp.w_satisfaction,
       tp.w_complaints,
       tp.w_process,
       cu.segment,
       rd.annual_value,
       rd.end_date - cu.acquired_date AS tenure_days
FROM renewal_decisions AS rd
JOIN reps AS r ON r.rep_id = rd.rep_id
JOIN customers AS cu ON cu.customer_id = rd.customer_id
JOIN quarters AS q ON q.q_key = rd.q_key
LEFT JOIN team_plan_days AS tp ON tp.team_id = r.team_id AND tp.day = rd.end_date
ORDER BY rd.end_date, rd.contract_id
