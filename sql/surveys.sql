-- Surveys: NPS and CSAT (spec 4.5), by the month of responded_at.

-- Per customer and month, only the latest nps response (ties: the greatest
-- response_id): a grouping by customer and month, which keeps one row per
-- group, rather than a window ranking every response (a sort of all of them).
-- The score is `latest_score` (src/engine/udf/latest_score.rs): the same
-- pick as an ordered last_value, which kept each group's ordering as
-- ScalarValues and cost several times as much. The run reads only the
-- score; response_id keeps the ordered last_value for the view's readers.
CREATE OR REPLACE VIEW nps_responses AS
WITH latest AS (
    SELECT s.customer_key,
           CAST(date_trunc('month', s.responded_at) AS DATE) AS month,
           last_value(s.response_id ORDER BY s.responded_at, s.response_id) AS response_id,
           max(s.responded_at) AS responded_at,
           latest_score(s.score, s.responded_at, s.response_id) AS score
    FROM surveys s
    WHERE s.survey = 'nps'
    GROUP BY s.customer_key, CAST(date_trunc('month', s.responded_at) AS DATE)
)
SELECT l.response_id, cs.customer_id, l.responded_at, l.month, l.score,
       COALESCE(cs.segment, 'unknown') AS segment
FROM latest l
LEFT JOIN customer_segments cs ON cs.customer_key = l.customer_key;

CREATE OR REPLACE VIEW csat_responses AS
SELECT s.response_id, s.customer_id, s.responded_at, s.score,
       CAST(date_trunc('month', s.responded_at) AS DATE) AS month,
       COALESCE(cs.segment, 'unknown') AS segment,
       s.score >= ${csat_positive_min} AS positive
FROM surveys s
LEFT JOIN customer_segments cs ON cs.customer_key = s.customer_key
WHERE s.survey = 'csat';

CREATE OR REPLACE VIEW survey_monthly AS
WITH nps AS (
    SELECT month, CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           SUM(CASE WHEN score >= 9 THEN 1 ELSE 0 END) AS promoters,
           SUM(CASE WHEN score >= 7 AND score < 9 THEN 1 ELSE 0 END) AS passives,
           SUM(CASE WHEN score < 7 THEN 1 ELSE 0 END) AS detractors
    FROM nps_responses
    GROUP BY GROUPING SETS ((month, segment), (month))
), csat AS (
    SELECT month, CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           COUNT(*) AS csat_responses,
           SUM(CASE WHEN positive THEN 1 ELSE 0 END) AS csat_positive
    FROM csat_responses
    GROUP BY GROUPING SETS ((month, segment), (month))
), counts AS (
    SELECT g.month, g.segment,
           COALESCE(n.promoters + n.passives + n.detractors, 0) AS nps_responses,
           COALESCE(n.promoters, 0) AS promoters,
           COALESCE(n.passives, 0) AS passives,
           COALESCE(n.detractors, 0) AS detractors,
           COALESCE(c.csat_responses, 0) AS csat_responses,
           COALESCE(c.csat_positive, 0) AS csat_positive
    FROM month_segments g
    LEFT JOIN nps n ON n.month = g.month AND n.segment = g.segment
    LEFT JOIN csat c ON c.month = g.month AND c.segment = g.segment
)
SELECT month, segment, nps_responses, promoters, passives, detractors,
       CASE WHEN nps_responses > 0
            THEN 100.0 * (promoters - detractors) / nps_responses END AS nps,
       -- 95% margin of error in NPS points, p and d the promoter and detractor shares
       CASE WHEN nps_responses > 0
            THEN 196.0 * sqrt(
                (CAST(promoters AS DOUBLE) / nps_responses + CAST(detractors AS DOUBLE) / nps_responses
                 - power(CAST(promoters - detractors AS DOUBLE) / nps_responses, 2))
                / nps_responses)
       END AS nps_moe,
       csat_responses, csat_positive,
       CASE WHEN csat_responses > 0 THEN 100.0 * csat_positive / csat_responses END AS csat
FROM counts;
