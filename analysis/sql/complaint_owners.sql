-- complaint_owners: the rep each complaint counts against.
--
-- A complaint's own rep_id when recorded ('recorded'); otherwise the owner on
-- created_date: the rep of the customer's contract active that day
-- (start_date <= d <= end_date and d < cancel_date), the latest start_date first,
-- then the smallest contract_id ('owner'). No active contract: 'unattributed',
-- rep_id NULL (reported in the diagnostics, counted against nobody).
WITH contract_active_days AS (
    SELECT contract_id,
           customer_id,
           rep_id,
           start_date AS first_active,
           LEAST(end_date, cancel_date - 1) AS last_active
    FROM contracts
),

owner_candidates AS (
    SELECT cp.complaint_id,
           a.rep_id,
           ROW_NUMBER() OVER (PARTITION BY cp.complaint_id
                              ORDER BY a.first_active DESC, a.contract_id) AS priority
    FROM complaints AS cp
    JOIN contract_active_days AS a
      ON a.customer_id = cp.customer_id
     AND a.first_active <= cp.created_date
     AND cp.created_date <= a.last_active
    WHERE cp.rep_id IS NULL
)

SELECT cp.complaint_id,
       cp.customer_id,
       cp.created_date,
       COALESCE(cp.rep_id, oc.rep_id) AS rep_id,
       CASE
           WHEN cp.rep_id IS NOT NULL THEN 'recorded'
           WHEN oc.rep_id IS NOT NULL THEN 'owner'
           ELSE 'unattributed'
       END AS attribution
FROM complaints AS cp
LEFT JOIN owner_candidates AS oc
       ON oc.complaint_id = cp.complaint_id
      AND oc.priority = 1
