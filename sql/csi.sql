-- CSI (spec 4.7): the csi survey's answers in the run's months, one row per
-- respondent (response_id) with a column per configured item. The item list
-- and the pivot columns are rendered from [csi.factors]; the estimation of
-- the weights (PLS) is Rust (src/csi, src/kpi/csi.rs) and reads
-- csi_respondents.

CREATE OR REPLACE VIEW csi_answers AS
SELECT s.response_id, s.customer_id, s.customer_key, s.responded_at, s.item, s.score
FROM surveys s
WHERE s.survey = 'csi'
  AND s.responded_at >= CAST(${first_month} AS TIMESTAMP)
  AND s.item IN (${csi_items});

-- complete: the respondent answered every configured item. (response_id,
-- item) is the surveys key, so COUNT(*) counts distinct items; COUNT(DISTINCT)
-- kept a set per respondent and doubled the run's peak memory. Answers are
-- grouped by customer_key (every clean answer has one), and each
-- respondent then takes its customer_id and segment from the directory's
-- segments: one look-up per respondent instead of one per answer, and an
-- integer group key instead of a string.
CREATE OR REPLACE VIEW csi_respondents AS
WITH answered AS (
    SELECT a.response_id, a.customer_key,
           COUNT(*) = ${csi_item_count} AS complete,
           ${csi_item_columns}
    FROM csi_answers a
    GROUP BY a.response_id, a.customer_key
)
SELECT r.response_id, cs.customer_id,
       COALESCE(cs.segment, 'unknown') AS segment,
       r.* EXCLUDE (response_id, customer_key)
FROM answered r
LEFT JOIN customer_segments cs ON cs.customer_key = r.customer_key;

-- Every csi item code answered in the run's months (a configured item
-- missing here is reported as an error).
CREATE OR REPLACE VIEW csi_items_answered AS
SELECT DISTINCT s.item
FROM surveys s
WHERE s.survey = 'csi' AND s.responded_at >= CAST(${first_month} AS TIMESTAMP);
