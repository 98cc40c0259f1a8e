-- rep_quarter_panel: one row per rep x quarter in which the rep was employed at least
-- one day, over the analysed quarters (the `quarters` table).
-- Needs: team_plan_days, customer_churn, complaint_owners.
WITH rep_quarters AS (
    SELECT r.rep_id, r.team_id, q.quarter, q.q_start, q.q_end, q.n_days
    FROM reps AS r
    JOIN quarters AS q
      ON r.hire_date <= q.q_end
     AND (r.exit_date IS NULL OR r.exit_date >= q.q_start)
),

team_quarter_weights AS (
    -- time-weighted plan weights: the mean over the quarter's days that have a plan
    SELECT team_id,
           quarter,
           COUNT(plan_id) AS plan_days,
           AVG(w_revenue) AS w_revenue,
           AVG(w_new_customers) AS w_new_customers,
           AVG(w_collection) AS w_collection,
           AVG(w_satisfaction) AS w_satisfaction,
           AVG(w_complaints) AS w_complaints,
           AVG(w_process) AS w_process
    FROM team_plan_days
    GROUP BY team_id, quarter
),

won_deals AS (
    -- q_key = 4 * year + quarter - 1: an equality join to `quarters` (fast; a
    -- BETWEEN join against quarter bounds gives the same rows)
    SELECT rep_id, amount, is_new_business,
           CAST(EXTRACT(YEAR FROM close_date) AS INTEGER) * 4
               + CAST(EXTRACT(QUARTER FROM close_date) AS INTEGER) - 1 AS q_key
    FROM deals
    WHERE status = 'won'
      AND close_date IS NOT NULL
),

won_deals_by_rep_quarter AS (
    SELECT d.rep_id,
           q.quarter,
           SUM(d.amount) AS bookings,
           COUNT(*) AS won_deals,
           SUM(CASE WHEN d.is_new_business THEN 1 ELSE 0 END) AS new_customers
    FROM won_deals AS d
    JOIN quarters AS q ON q.q_key = d.q_key
    GROUP BY d.rep_id, q.quarter
),

surveys_with_quarter AS (
    SELECT rep_id, responded_date, csat, nps,
           CAST(EXTRACT(YEAR FROM sent_date) AS INTEGER) * 4
               + CAST(EXTRACT(QUARTER FROM sent_date) AS INTEGER) - 1 AS q_key
    FROM surveys
),

surveys_by_rep_quarter AS (
    -- a survey counts in the quarter it was sent; responded_date NULL = no response
    SELECT s.rep_id,
           q.quarter,
           COUNT(*) AS surveys_sent,
           COUNT(s.responded_date) AS responses,
           COUNT(CASE WHEN s.responded_date IS NOT NULL THEN s.csat END) AS csat_responses,
           AVG(CAST(CASE WHEN s.responded_date IS NOT NULL THEN s.csat END
                    AS DOUBLE PRECISION)) AS csat_mean,
           COUNT(CASE WHEN s.responded_date IS NOT NULL THEN s.nps END) AS nps_responses,
           COUNT(CASE WHEN s.responded_date IS NOT NULL AND s.nps >= 9 THEN 1 END) AS promoters,
           COUNT(CASE WHEN s.responded_date IS NOT NULL AND s.nps <= 6 THEN 1 END) AS detractors
    FROM surveys_with_quarter AS s
    JOIN quarters AS q ON q.q_key = s.q_key
    GROUP BY s.rep_id, q.quarter
),

attributed_complaints AS (
    SELECT rep_id,
           CAST(EXTRACT(YEAR FROM created_date) AS INTEGER) * 4
               + CAST(EXTRACT(QUARTER FROM created_date) AS INTEGER) - 1 AS q_key
    FROM complaint_owners
    WHERE rep_id IS NOT NULL
),

complaints_by_rep_quarter AS (
    SELECT co.rep_id, q.quarter, COUNT(*) AS complaints
    FROM attributed_complaints AS co
    JOIN quarters AS q ON q.q_key = co.q_key
    GROUP BY co.rep_id, q.quarter
),

contract_active_days AS (
    -- active on d: start_date <= d <= end_date and d < cancel_date; nothing after as_of
    SELECT rep_id,
           start_date AS first_active,
           LEAST(end_date, cancel_date - 1, CAST($as_of AS DATE)) AS last_active
    FROM contracts
),

exposure_by_rep_quarter AS (
    -- customer-quarters: active days of each of the rep's contracts / days in quarter
    SELECT a.rep_id,
           q.quarter,
           CAST(SUM(LEAST(a.last_active, q.q_end) - GREATEST(a.first_active, q.q_start) + 1)
                AS DOUBLE PRECISION) / MAX(q.n_days) AS exposure
    FROM contract_active_days AS a
    JOIN quarters AS q
      ON a.first_active <= q.q_end
     AND a.last_active >= q.q_start
    GROUP BY a.rep_id, q.quarter
),

renewal_decisions AS (
    -- scheduled end on or before as_of, not cancelled (cancellation is churn)
    SELECT rep_id, outcome,
           CAST(EXTRACT(YEAR FROM end_date) AS INTEGER) * 4
               + CAST(EXTRACT(QUARTER FROM end_date) AS INTEGER) - 1 AS q_key
    FROM contracts
    WHERE cancel_date IS NULL
      AND end_date <= CAST($as_of AS DATE)
      AND outcome <> 'pending'
),

renewals_by_rep_quarter AS (
    SELECT c.rep_id,
           q.quarter,
           COUNT(*) AS renewals_due,
           SUM(CASE WHEN c.outcome = 'renewed' THEN 1 ELSE 0 END) AS renewals_renewed
    FROM renewal_decisions AS c
    JOIN quarters AS q ON q.q_key = c.q_key
    GROUP BY c.rep_id, q.quarter
),

churn_owner_candidates AS (
    -- the owner on the churn day as in customer_owner_spans: contracts covering it
    -- (a cancelled contract covers its cancel day), latest start_date, then contract_id
    SELECT ch.customer_id,
           ch.churn_date,
           c.rep_id,
           ROW_NUMBER() OVER (PARTITION BY ch.customer_id
                              ORDER BY c.start_date DESC, c.contract_id) AS priority
    FROM customer_churn AS ch
    JOIN contracts AS c
      ON c.customer_id = ch.customer_id
     AND GREATEST(c.start_date, ch.acquired_date) <= ch.churn_date
     AND ch.churn_date <= LEAST(c.end_date, c.cancel_date)
    WHERE ch.churn_date IS NOT NULL
),

churn_owners AS (
    SELECT rep_id,
           CAST(EXTRACT(YEAR FROM churn_date) AS INTEGER) * 4
               + CAST(EXTRACT(QUARTER FROM churn_date) AS INTEGER) - 1 AS q_key
    FROM churn_owner_candidates
    WHERE priority = 1
),

churn_by_rep_quarter AS (
    SELECT co.rep_id, q.quarter, COUNT(*) AS churned_customers
    FROM churn_owners AS co
    JOIN quarters AS q ON q.q_key = co.q_key
    GROUP BY co.rep_id, q.quarter
)

SELECT rq.rep_id,
       rq.team_id,
       rq.quarter,
       CAST(COALESCE(w.plan_days, 0) AS BIGINT) AS plan_days,
       w.w_revenue,
       w.w_new_customers,
       w.w_collection,
       w.w_satisfaction,
       w.w_complaints,
       w.w_process,
       CAST(COALESCE(b.bookings, 0) AS DOUBLE PRECISION) AS bookings,
       LN(1 + CAST(COALESCE(b.bookings, 0) AS DOUBLE PRECISION)) AS log_bookings,
       CAST(COALESCE(b.won_deals, 0) AS BIGINT) AS won_deals,
       CAST(COALESCE(b.new_customers, 0) AS BIGINT) AS new_customers,
       CAST(COALESCE(s.surveys_sent, 0) AS BIGINT) AS surveys_sent,
       CAST(COALESCE(s.responses, 0) AS BIGINT) AS responses,
       CAST(COALESCE(s.csat_responses, 0) AS BIGINT) AS csat_responses,
       s.csat_mean,
       CAST(COALESCE(s.nps_responses, 0) AS BIGINT) AS nps_responses,
       CASE
           WHEN s.nps_responses > 0
           THEN 100 * CAST(s.promoters - s.detractors AS DOUBLE PRECISION) / s.nps_responses
       END AS nps,
       CASE
           WHEN s.surveys_sent > 0
           THEN CAST(s.responses AS DOUBLE PRECISION) / s.surveys_sent
       END AS response_rate,
       CAST(COALESCE(c.complaints, 0) AS BIGINT) AS complaints,
       CAST(COALESCE(e.exposure, 0) AS DOUBLE PRECISION) AS exposure,
       CAST(COALESCE(rn.renewals_due, 0) AS BIGINT) AS renewals_due,
       CAST(COALESCE(rn.renewals_renewed, 0) AS BIGINT) AS renewals_renewed,
       CAST(COALESCE(ch.churned_customers, 0) AS BIGINT) AS churned_customers
FROM rep_quarters AS rq
LEFT JOIN team_quarter_weights AS w ON w.team_id = rq.team_id AND w.quarter = rq.quarter
LEFT JOIN won_deals_by_rep_quarter AS b ON b.rep_id = rq.rep_id AND b.quarter = rq.quarter
LEFT JOIN surveys_by_rep_quarter AS s ON s.rep_id = rq.rep_id AND s.quarter = rq.quarter
LEFT JOIN complaints_by_rep_quarter AS c ON c.rep_id = rq.rep_id AND c.quarter = rq.quarter
LEFT JOIN exposure_by_rep_quarter AS e ON e.rep_id = rq.rep_id AND e.quarter = rq.quarter
LEFT JOIN renewals_by_rep_quarter AS rn ON rn.rep_id = rq.rep_id AND rn.quarter = rq.quarter
LEFT JOIN churn_by_rep_quarter AS ch ON ch.rep_id = rq.rep_id AND ch.quarter = rq.quarter
ORDER BY rq.rep_id, rq.quarter
