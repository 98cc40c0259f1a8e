-- diagnostics: counts of rows the derived tables could not use as the contract intends.
-- One row per check; count 0 means nothing to report.
-- Needs: team_plan_days, customer_churn, customer_owner_spans, complaint_owners.
SELECT 'unattributed_complaints' AS check_name,
       COUNT(*) AS n,
       'complaints with no rep_id and no active contract on created_date; counted against nobody' AS note
FROM complaint_owners
WHERE attribution = 'unattributed'

UNION ALL
SELECT 'complaints_attributed_to_owner',
       COUNT(*),
       'complaints with no rep_id, counted against the owner on created_date'
FROM complaint_owners
WHERE attribution = 'owner'

UNION ALL
SELECT 'overlapping_plan_days',
       COUNT(*),
       'team-days with more than one plan in force; the latest valid_from was used'
FROM team_plan_days
WHERE plans_in_force > 1

UNION ALL
SELECT 'churn_outside_coverage',
       COUNT(*),
       'customers whose churn date falls on no day covered by a contract; no event recorded'
FROM customer_churn AS ch
WHERE ch.churn_date IS NOT NULL
  AND NOT EXISTS (
      SELECT 1
      FROM customer_owner_spans AS o
      WHERE o.customer_id = ch.customer_id
        AND ch.churn_date BETWEEN o.first_day AND o.last_day
  )

UNION ALL
SELECT 'contracts_before_acquisition',
       COUNT(*),
       'contracts starting before the customer''s acquired_date; tenure clipped at 0'
FROM contracts AS c
JOIN customers AS cu ON cu.customer_id = c.customer_id
WHERE c.start_date < cu.acquired_date

UNION ALL
SELECT 'pending_after_end',
       COUNT(*),
       'uncancelled contracts ended on or before the as-of date but still pending; not renewal decisions'
FROM contracts
WHERE end_date <= CAST($as_of AS DATE)
  AND cancel_date IS NULL
  AND outcome = 'pending'
