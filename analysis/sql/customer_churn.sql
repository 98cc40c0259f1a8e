-- customer_churn: one row per customer with its churn date, or NULL when censored.
--
-- Contract rule: a customer churns on its earliest cancel_date; failing that, on the
-- end_date of a contract with outcome 'churned' that no contract of the customer
-- starts after. Several such contracts (overlapping ones) -> the earliest end_date.
-- Anything after $as_of is not yet known and is ignored.
WITH visible_contracts AS (
    SELECT *
    FROM contracts
    WHERE start_date <= CAST($as_of AS DATE)
),

first_cancellation AS (
    SELECT customer_id, MIN(cancel_date) AS cancel_churn_date
    FROM visible_contracts
    WHERE cancel_date IS NOT NULL
      AND cancel_date <= CAST($as_of AS DATE)
    GROUP BY customer_id
),

churned_without_successor AS (
    SELECT c.customer_id, MIN(c.end_date) AS end_churn_date
    FROM visible_contracts AS c
    WHERE c.outcome = 'churned'
      AND c.end_date <= CAST($as_of AS DATE)
      AND NOT EXISTS (
          SELECT 1
          FROM visible_contracts AS later
          WHERE later.customer_id = c.customer_id
            AND later.start_date > c.end_date
      )
    GROUP BY c.customer_id
)

SELECT cu.customer_id,
       cu.acquired_date,
       COALESCE(fc.cancel_churn_date, cs.end_churn_date) AS churn_date,
       CASE
           WHEN fc.cancel_churn_date IS NOT NULL THEN 'cancel'
           WHEN cs.end_churn_date IS NOT NULL THEN 'end'
       END AS churn_kind
FROM customers AS cu
LEFT JOIN first_cancellation AS fc ON fc.customer_id = cu.customer_id
LEFT JOIN churned_without_successor AS cs ON cs.customer_id = cu.customer_id
