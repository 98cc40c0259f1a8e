-- customer_owner_spans: maximal runs of consecutive days on which a customer is at risk
-- of churning and owned by one rep (the basis of the survival episodes).
--
-- A contract keeps its customer at risk from start_date through end_date, or through
-- cancel_date when cancelled: the cancellation day is the churn day, and the customer
-- is counted at risk on it. Coverage never runs past the customer's churn date or
-- $as_of, and never starts before acquired_date.
-- Where contracts overlap, the owner is the rep of the covering contract with the
-- latest start_date, then the smallest contract_id.
-- Needs: customer_churn.
WITH contract_cover AS (
    SELECT c.contract_id,
           c.customer_id,
           c.rep_id,
           c.start_date,
           GREATEST(c.start_date, ch.acquired_date) AS cover_first,
           LEAST(c.end_date, c.cancel_date, ch.churn_date, CAST($as_of AS DATE)) AS cover_last
    FROM contracts AS c
    JOIN customer_churn AS ch ON ch.customer_id = c.customer_id
),

covering_contracts AS (
    SELECT * FROM contract_cover WHERE cover_first <= cover_last
),

cover_breaks AS (
    SELECT customer_id, cover_first AS break_day FROM covering_contracts
    UNION
    SELECT customer_id, cover_last + 1 AS break_day FROM covering_contracts
),

elementary_segments AS (
    -- between two consecutive breaks the set of covering contracts cannot change
    SELECT customer_id,
           break_day AS seg_first,
           LEAD(break_day) OVER (PARTITION BY customer_id ORDER BY break_day) - 1 AS seg_last
    FROM cover_breaks
),

segment_owner_candidates AS (
    SELECT s.customer_id,
           s.seg_first,
           s.seg_last,
           cc.rep_id,
           ROW_NUMBER() OVER (PARTITION BY s.customer_id, s.seg_first
                              ORDER BY cc.start_date DESC, cc.contract_id) AS priority
    FROM elementary_segments AS s
    JOIN covering_contracts AS cc
      ON cc.customer_id = s.customer_id
     AND cc.cover_first <= s.seg_first
     AND s.seg_first <= cc.cover_last
    WHERE s.seg_last IS NOT NULL
),

owned_segments AS (
    SELECT customer_id, seg_first, seg_last, rep_id
    FROM segment_owner_candidates
    WHERE priority = 1
),

owner_runs AS (
    -- contiguous segments of one owner form a run: within a run, the first day minus
    -- the owner's days counted so far is constant; a gap or another owner's days in
    -- between change it
    SELECT customer_id, seg_first, seg_last, rep_id,
           seg_last + 1 - CAST(SUM(seg_last - seg_first + 1) OVER (
               PARTITION BY customer_id, rep_id ORDER BY seg_first
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS INTEGER) AS run_key
    FROM owned_segments
)

SELECT customer_id,
       rep_id,
       MIN(seg_first) AS first_day,
       MAX(seg_last) AS last_day
FROM owner_runs
GROUP BY customer_id, rep_id, run_key
