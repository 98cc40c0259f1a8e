-- survey_respondents: each customer who answered a survey of a rep, per quarter sent
-- (distinct rep_id, customer_id, quarter; every quarter up to the view's day). The
-- survey-gaming check compares these customers with all the rep's customers.
-- Needs: nothing (reads `surveys`).
SELECT DISTINCT rep_id,
       customer_id,
       CAST(CAST(EXTRACT(YEAR FROM sent_date) AS INTEGER) AS VARCHAR) || 'Q'
           || CAST(CAST(EXTRACT(QUARTER FROM sent_date) AS INTEGER) AS VARCHAR) AS quarter
FROM surveys
WHERE sent_date IS NOT NULL
  AND responded_date IS NOT NULL
ORDER BY rep_id, customer_id, quarter
