-- Customer health score (spec 4.9) and its trend (4.12).
--
-- Section `scores` is the score at one date, score_date: the engine runs
-- it twice, for as_of (views health_components and health_scores) and for
-- `health.trend_days` earlier (health_components_previous and
-- health_scores_previous), as if as_of had been that day. Every window is
-- bounded on both sides by the score date, so the earlier score sees
-- nothing dated after it. "Within N days" = the dates
-- score_date-(N-1) .. score_date. Each component is 0-100 or null without
-- data; the score is the weighted mean of the non-null ones, and each
-- component's share of it is kept.
--
-- The earlier score reads the rows validated as of as_of: a duplicate key
-- whose copies fall on both sides of the earlier date is rejected in both
-- scores (a run as of that day would have seen one copy and kept it).

-- @section scores
CREATE OR REPLACE VIEW ${health_components} AS
WITH active AS (
    -- active at the score date: signed up on or before it, not churned by
    -- it. customer_id and segment as plain strings, not string views: an
    -- output batch of a view column taken from a join's build side holds
    -- every buffer of that side, which the engine walks again for every
    -- batch (a fourth of the stage's time when the active customers were
    -- the joins' build side; customer_health turns them back into views,
    -- the type of every other output's strings)
    SELECT c.customer_key, arrow_cast(c.customer_id, 'Utf8') AS customer_id,
           arrow_cast(COALESCE(cs.segment, 'unknown'), 'Utf8') AS segment
    FROM customers c
    LEFT JOIN customer_segments cs ON cs.customer_key = c.customer_key
    WHERE c.signup_date <= ${score_date}
      AND (c.churn_date IS NULL OR c.churn_date > ${score_date})
), usage_windows AS (
    -- per customer_key: the sums of SUM(...) GROUP BY customer_key, by
    -- sums_by_key, which keeps them in arrays indexed by the dense key
    -- instead of probing a hash table with each of the window's rows
    SELECT w['key'] AS customer_key, w['sum1'] AS recent, w['sum2'] AS earlier
    FROM (
        SELECT unnest(sums_by_key(
                   customer_key,
                   CASE WHEN day >= ${score_date} - INTERVAL '29 days' THEN events ELSE 0 END,
                   CASE WHEN day < ${score_date} - INTERVAL '29 days' THEN events ELSE 0 END))
               AS w
        FROM usage
        WHERE day >= ${score_date} - INTERVAL '119 days' AND day <= ${score_date}
    )
), latest_nps AS (
    -- the latest answer (ties: the greatest response_id), by a grouping
    SELECT customer_key, latest_score(score, responded_at, response_id) AS score
    FROM surveys
    WHERE survey = 'nps'
      AND CAST(responded_at AS DATE) >= ${score_date} - INTERVAL '179 days'
      AND CAST(responded_at AS DATE) <= ${score_date}
    GROUP BY customer_key
), recent_csat AS (
    SELECT customer_key, AVG(score) AS mean_score
    FROM surveys
    WHERE survey = 'csat'
      AND CAST(responded_at AS DATE) >= ${score_date} - INTERVAL '89 days'
      AND CAST(responded_at AS DATE) <= ${score_date}
    GROUP BY customer_key
), recent_tickets AS (
    SELECT customer_key, COUNT(*) AS tickets
    FROM tickets
    WHERE CAST(opened_at AS DATE) >= ${score_date} - INTERVAL '29 days'
      AND CAST(opened_at AS DATE) <= ${score_date}
    GROUP BY customer_key
), mrr AS (
    -- the MRR snapshots (4.3) of the score date's month, taken on the
    -- score date as 4.3 takes as_of's, and of the month three months
    -- before (its last day, score_mrr_base_day), from the lines ordered
    -- on or before the score date
    SELECT customer_key,
           SUM(CASE WHEN period_start <= ${score_date} AND ${score_date} < period_end
                    THEN monthly_micros ELSE 0 END) AS now_micros,
           SUM(CASE WHEN period_start <= ${score_mrr_base_day} AND ${score_mrr_base_day} < period_end
                    THEN monthly_micros ELSE 0 END) AS base_micros
    FROM mrr_lines
    WHERE order_date <= ${score_date} AND period_start <= ${score_date}
      AND period_end > ${score_mrr_base_day}
    GROUP BY customer_key
)
SELECT a.customer_key, a.customer_id, a.segment,
       CASE WHEN u.earlier > 0
            THEN LEAST(100.0, 50.0 * u.recent / (u.earlier / 3.0)) END AS usage,
       10.0 * n.score AS nps,
       25.0 * (c.mean_score - 1.0) AS csat,
       GREATEST(0.0, 100.0 - 20.0 * COALESCE(t.tickets, 0)) AS support,
       CASE WHEN m.base_micros > 0
            THEN LEAST(100.0, 50.0 * m.now_micros / m.base_micros) END AS mrr_trend
-- Every active customer with its components: right joins, each
-- component's few columns on the left, which the engine builds its hash
-- table of, and the active customers with the columns gathered so far on
-- the right, streamed past it. As left joins the growing side was built
-- into each table, every column copied once per join.
FROM mrr m RIGHT JOIN (
    recent_tickets t RIGHT JOIN (
        recent_csat c RIGHT JOIN (
            latest_nps n RIGHT JOIN (
                usage_windows u RIGHT JOIN active a ON u.customer_key = a.customer_key
            ) ON n.customer_key = a.customer_key
        ) ON c.customer_key = a.customer_key
    ) ON t.customer_key = a.customer_key
) ON m.customer_key = a.customer_key;

CREATE OR REPLACE VIEW ${health_scores} AS
WITH weighted AS (
    SELECT h.*,
           CASE WHEN usage IS NULL THEN 0.0 ELSE ${w_usage} END
           + CASE WHEN nps IS NULL THEN 0.0 ELSE ${w_nps} END
           + CASE WHEN csat IS NULL THEN 0.0 ELSE ${w_csat} END
           + ${w_support}
           + CASE WHEN mrr_trend IS NULL THEN 0.0 ELSE ${w_mrr_trend} END AS weight_total
    FROM ${health_components} h
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
SELECT customer_key, customer_id, segment, health_score,
       CASE WHEN health_score >= ${green_min} THEN 'green'
            WHEN health_score >= ${yellow_min} THEN 'yellow'
            WHEN health_score IS NOT NULL THEN 'red' END AS band,
       usage, nps, csat, support, mrr_trend,
       usage_contribution, nps_contribution, csat_contribution, support_contribution,
       mrr_trend_contribution
FROM contributions;

-- @section customer_health
-- The score at as_of beside the one trend_days earlier (null for a
-- customer not active then); the change rounded like the scores.
CREATE OR REPLACE VIEW customer_health AS
SELECT ${as_of} AS as_of,
       arrow_cast(h.customer_id, 'Utf8View') AS customer_id,
       arrow_cast(h.segment, 'Utf8View') AS segment,
       h.health_score, h.band,
       h.usage, h.nps, h.csat, h.support, h.mrr_trend,
       h.usage_contribution, h.nps_contribution, h.csat_contribution, h.support_contribution,
       h.mrr_trend_contribution,
       p.health_score AS previous_health_score,
       p.band AS previous_band,
       round(h.health_score - p.health_score, 9) AS health_change
-- (a right join, the previous scores' few columns built, as above)
FROM health_scores_previous p
RIGHT JOIN health_scores h ON p.customer_key = h.customer_key;
