-- survey_counts: surveys per rep and quarter sent, over every quarter up to the view's
-- day (not only the analysed quarters: the survey-gaming window may reach further back).
-- A survey counts in the quarter it was sent; responded_date NULL = no response. The
-- answers are kept as counts per score (CSAT 1..5, NPS 0..10), so every estimator of
-- analysis/metrics.py and analysis/decision/gaming.py (means, standard deviations,
-- shares) can be computed exactly from this table without the survey rows.
-- Needs: nothing (reads `surveys`).
WITH sent AS (
    SELECT rep_id, responded_date, csat, nps,
           CAST(EXTRACT(YEAR FROM sent_date) AS INTEGER) AS sent_year,
           CAST(EXTRACT(QUARTER FROM sent_date) AS INTEGER) AS sent_q
    FROM surveys
    WHERE sent_date IS NOT NULL
),

answered AS (
    SELECT rep_id, sent_year, sent_q, responded_date,
           CASE WHEN responded_date IS NOT NULL THEN csat END AS csat,
           CASE WHEN responded_date IS NOT NULL THEN nps END AS nps
    FROM sent
)

SELECT rep_id,
       CAST(sent_year AS VARCHAR) || 'Q' || CAST(sent_q AS VARCHAR) AS quarter,
       COUNT(*) AS surveys_sent,
       COUNT(responded_date) AS responses,
       COUNT(CASE WHEN csat = 1 THEN 1 END) AS csat_1,
       COUNT(CASE WHEN csat = 2 THEN 1 END) AS csat_2,
       COUNT(CASE WHEN csat = 3 THEN 1 END) AS csat_3,
       COUNT(CASE WHEN csat = 4 THEN 1 END) AS csat_4,
       COUNT(CASE WHEN csat = 5 THEN 1 END) AS csat_5,
       COUNT(CASE WHEN nps = 0 THEN 1 END) AS nps_0,
       COUNT(CASE WHEN nps = 1 THEN 1 END) AS nps_1,
       COUNT(CASE WHEN nps = 2 THEN 1 END) AS nps_2,
       COUNT(CASE WHEN nps = 3 THEN 1 END) AS nps_3,
       COUNT(CASE WHEN nps = 4 THEN 1 END) AS nps_4,
       COUNT(CASE WHEN nps = 5 THEN 1 END) AS nps_5,
       COUNT(CASE WHEN nps = 6 THEN 1 END) AS nps_6,
       COUNT(CASE WHEN nps = 7 THEN 1 END) AS nps_7,
       COUNT(CASE WHEN nps = 8 THEN 1 END) AS nps_8,
       COUNT(CASE WHEN nps = 9 THEN 1 END) AS nps_9,
       COUNT(CASE WHEN nps = 10 THEN 1 END) AS nps_10
FROM answered
GROUP BY rep_id, sent_year, sent_q
ORDER BY rep_id, quarter
