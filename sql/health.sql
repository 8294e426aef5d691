-- Customer health score (spec 4.9) for the customers active at as_of.
-- "Within N days" = the dates as_of-(N-1) .. as_of. Each component is
-- 0-100 or null without data; the score is the weighted mean of the
-- non-null ones, and each component's share of it is kept.

CREATE OR REPLACE VIEW health_components AS
WITH active AS (
    -- the clean customers view already reads a churn_date after as_of as null.
    -- customer_id and segment as plain strings, not string views: the joins
    -- below keep the active customers as their build side, and each output
    -- batch of a view column taken from there holds every buffer of the
    -- build side, which the engine walks again for every batch (a fourth of
    -- the stage's time after the change; customer_health turns them back
    -- into views, the type of every other output's strings)
    SELECT c.customer_key, arrow_cast(c.customer_id, 'Utf8') AS customer_id,
           arrow_cast(COALESCE(cs.segment, 'unknown'), 'Utf8') AS segment
    FROM customers c
    LEFT JOIN customer_segments cs ON cs.customer_key = c.customer_key
    WHERE c.signup_date <= ${as_of} AND (c.churn_date IS NULL OR c.churn_date > ${as_of})
), usage_windows AS (
    SELECT customer_key,
           SUM(CASE WHEN day >= ${as_of} - INTERVAL '29 days' THEN events ELSE 0 END) AS recent,
           SUM(CASE WHEN day < ${as_of} - INTERVAL '29 days' THEN events ELSE 0 END) AS earlier
    FROM usage
    WHERE day >= ${as_of} - INTERVAL '119 days'
    GROUP BY customer_key
), latest_nps AS (
    -- the latest answer (ties: the greatest response_id), by a grouping
    SELECT customer_key, last_value(score ORDER BY responded_at, response_id) AS score
    FROM surveys
    WHERE survey = 'nps'
      AND CAST(responded_at AS DATE) >= ${as_of} - INTERVAL '179 days'
    GROUP BY customer_key
), recent_csat AS (
    SELECT customer_key, AVG(score) AS mean_score
    FROM surveys
    WHERE survey = 'csat'
      AND CAST(responded_at AS DATE) >= ${as_of} - INTERVAL '89 days'
    GROUP BY customer_key
), recent_tickets AS (
    SELECT customer_key, COUNT(*) AS tickets
    FROM tickets
    WHERE CAST(opened_at AS DATE) >= ${as_of} - INTERVAL '29 days'
    GROUP BY customer_key
), mrr AS (
    SELECT customer_key,
           SUM(CASE WHEN month = ${as_of_month} THEN mrr_micros ELSE 0 END) AS now_micros,
           SUM(CASE WHEN month = ${health_mrr_base_month} THEN mrr_micros ELSE 0 END) AS base_micros
    FROM customer_mrr_movements
    WHERE month IN (${as_of_month}, ${health_mrr_base_month})
    GROUP BY customer_key
)
SELECT a.customer_id, a.segment,
       CASE WHEN u.earlier > 0
            THEN LEAST(100.0, 50.0 * u.recent / (u.earlier / 3.0)) END AS usage,
       10.0 * n.score AS nps,
       25.0 * (c.mean_score - 1.0) AS csat,
       GREATEST(0.0, 100.0 - 20.0 * COALESCE(t.tickets, 0)) AS support,
       CASE WHEN m.base_micros > 0
            THEN LEAST(100.0, 50.0 * m.now_micros / m.base_micros) END AS mrr_trend
FROM active a
LEFT JOIN usage_windows u ON u.customer_key = a.customer_key
LEFT JOIN latest_nps n ON n.customer_key = a.customer_key
LEFT JOIN recent_csat c ON c.customer_key = a.customer_key
LEFT JOIN recent_tickets t ON t.customer_key = a.customer_key
LEFT JOIN mrr m ON m.customer_key = a.customer_key;

CREATE OR REPLACE VIEW customer_health AS
WITH weighted AS (
    SELECT h.*,
           CASE WHEN usage IS NULL THEN 0.0 ELSE ${w_usage} END
           + CASE WHEN nps IS NULL THEN 0.0 ELSE ${w_nps} END
           + CASE WHEN csat IS NULL THEN 0.0 ELSE ${w_csat} END
           + ${w_support}
           + CASE WHEN mrr_trend IS NULL THEN 0.0 ELSE ${w_mrr_trend} END AS weight_total
    FROM health_components h
), contributions AS (
    SELECT w.*,
           CASE WHEN weight_total > 0 THEN ${w_usage} * usage / weight_total END
               AS usage_contribution,
           CASE WHEN weight_total > 0 THEN ${w_nps} * nps / weight_total END
               AS nps_contribution,
           CASE WHEN weight_total > 0 THEN ${w_csat} * csat / weight_total END
               AS csat_contribution,
           CASE WHEN weight_total > 0 THEN ${w_support} * support / weight_total END
               AS support_contribution,
           CASE WHEN weight_total > 0 THEN ${w_mrr_trend} * mrr_trend / weight_total END
               AS mrr_trend_contribution,
           -- rounded to 1e-9: float noise would otherwise put a score of
           -- 100 at 100.00000000000001 or one of 70 at 69.99999999999999
           CASE WHEN weight_total > 0
                THEN round((COALESCE(${w_usage} * usage, 0) + COALESCE(${w_nps} * nps, 0)
                            + COALESCE(${w_csat} * csat, 0) + ${w_support} * support
                            + COALESCE(${w_mrr_trend} * mrr_trend, 0)) / weight_total, 9)
           END AS health_score
    FROM weighted w
)
SELECT ${as_of} AS as_of,
       arrow_cast(customer_id, 'Utf8View') AS customer_id,
       arrow_cast(segment, 'Utf8View') AS segment,
       health_score,
       CASE WHEN health_score >= ${green_min} THEN 'green'
            WHEN health_score >= ${yellow_min} THEN 'yellow'
            WHEN health_score IS NOT NULL THEN 'red' END AS band,
       usage, nps, csat, support, mrr_trend,
       usage_contribution, nps_contribution, csat_contribution, support_contribution,
       mrr_trend_contribution
FROM contributions;
