-- Customer value (spec 4.8): CRC per month, CLV and the customer
-- profitability score. W = the 12 months ending with as_of's month
-- (`trailing_months`, registered by the engine, from ${trailing_first_month}).
-- Money is summed in integer micro-units (1e-6), as in mrr.sql, so totals
-- are exact and reruns identical; sums over many customers as 128-bit
-- decimals, which cannot wrap as 64-bit sums past 9.2e12 currency units.

-- Views that most steps read carry no segment: a join with the customers'
-- segments sorts every row by customer, so it is made where the segment
-- is needed, on as few rows as possible.
CREATE OR REPLACE VIEW cost_lines AS
SELECT month, category, customer_id, customer_key,
       -- TRY_CAST as in mrr_lines: a rejected row beyond 9e12 may reach it
       TRY_CAST(round(amount * 1000000) AS BIGINT) AS amount_micros
FROM costs;

-- CRC: retention costs of the month (direct retention costs of the
-- segment's customers + overhead retention costs * CE_segment / CE_all)
-- per customer at the month's end.
CREATE OR REPLACE VIEW value_monthly AS
WITH direct AS (
    SELECT month, CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           SUM(CAST(amount_micros AS DECIMAL(38, 0))) AS micros
    FROM (
        SELECT c.month, COALESCE(cs.segment, 'unknown') AS segment, c.amount_micros
        FROM cost_lines c
        LEFT JOIN customer_segments cs ON cs.customer_key = c.customer_key
        WHERE c.category = 'retention' AND c.customer_id IS NOT NULL
    )
    GROUP BY GROUPING SETS ((month, segment), (month))
), overhead AS (
    SELECT month, SUM(CAST(amount_micros AS DECIMAL(38, 0))) AS micros
    FROM cost_lines
    WHERE category = 'retention' AND customer_id IS NULL
    GROUP BY month
), costs AS (
    SELECT r.month, r.segment, r.customers_end,
           COALESCE(d.micros, 0) / 1000000.0
           + COALESCE(o.micros, 0) / 1000000.0
             * CASE WHEN r.segment = 'all' THEN 1.0
                    WHEN a.customers_end > 0
                    THEN CAST(r.customers_end AS DOUBLE) / a.customers_end
                    ELSE 0.0 END AS retention_cost
    FROM retention_monthly r
    JOIN retention_monthly a ON a.month = r.month AND a.segment = 'all'
    LEFT JOIN direct d ON d.month = r.month AND d.segment = r.segment
    LEFT JOIN overhead o ON o.month = r.month
)
SELECT c.month, c.segment, c.retention_cost,
       CASE WHEN c.customers_end > 0 THEN c.retention_cost / c.customers_end END AS crc,
       m.arpa,
       CASE WHEN c.customers_end > 0 AND m.arpa > 0
            THEN c.retention_cost / c.customers_end / m.arpa END AS crc_to_arpa
FROM costs c
JOIN mrr_monthly m ON m.month = c.month AND m.segment = c.segment;

-- Order lines booked in W (refunds included).
CREATE OR REPLACE VIEW trailing_orders AS
-- (TRY_CAST as in mrr_lines: value_summary's filter amount_micros > 0 is
-- evaluated beside the one that leaves rejected orders out.)
SELECT customer_id, customer_key, kind, TRY_CAST(round(amount * 1000000) AS BIGINT) AS amount_micros
FROM orders
WHERE order_date >= ${trailing_first_month};

-- Overhead service costs of each month of W, split across the customers in
-- proportion to their tickets opened that month (a month without tickets:
-- equally across the customers active at its end, or at as_of in as_of's
-- month). Shares are whole micro-units: each customer gets the floor of
-- its share and the micro-units left over go one each to the largest
-- remainders (ties by customer_id: customer_key is in its order), so a
-- month's shares add up to its overhead exactly.
CREATE OR REPLACE VIEW overhead_allocation AS
WITH overhead AS (
    SELECT month, SUM(amount_micros) AS micros
    FROM cost_lines
    WHERE category = 'service' AND customer_id IS NULL AND month >= ${trailing_first_month}
    GROUP BY month
), ticket_weights AS (
    SELECT CAST(date_trunc('month', opened_at) AS DATE) AS month, customer_key,
           COUNT(*) AS weight
    FROM tickets
    WHERE opened_at >= CAST(${trailing_first_month} AS TIMESTAMP)
    GROUP BY CAST(date_trunc('month', opened_at) AS DATE), customer_key
), months_with_tickets AS (
    -- from the tickets, not ticket_weights: a grouping by month alone
    -- instead of the per-customer grouping a second time
    SELECT CAST(date_trunc('month', opened_at) AS DATE) AS month
    FROM tickets
    WHERE opened_at >= CAST(${trailing_first_month} AS TIMESTAMP)
    GROUP BY CAST(date_trunc('month', opened_at) AS DATE)
), months_without_tickets AS (
    SELECT o.month,
           LEAST(CAST(o.month + INTERVAL '1 month' - INTERVAL '1 day' AS DATE), ${as_of})
               AS month_end
    FROM overhead o
    LEFT JOIN months_with_tickets t ON t.month = o.month
    WHERE t.month IS NULL
), weights AS (
    SELECT t.month, t.customer_key, t.weight
    FROM ticket_weights t
    JOIN overhead o ON o.month = t.month
    UNION ALL
    SELECT m.month, c.customer_key, CAST(1 AS BIGINT) AS weight
    FROM months_without_tickets m
    JOIN customers c
      ON c.signup_date <= m.month_end
     AND (c.churn_date IS NULL OR c.churn_date > m.month_end)
), totals AS (
    SELECT w.month, w.customer_key, w.weight, o.micros AS overhead,
           SUM(w.weight) OVER (PARTITION BY w.month) AS total_weight
    FROM weights w
    JOIN overhead o ON o.month = w.month
), based AS (
    -- base = overhead * weight / total_weight and remainder = overhead *
    -- weight - base * total_weight (division truncating, as BIGINT's),
    -- without the product overhead * weight, which would wrap 64 bits
    -- (1e11 currency units of overhead times 93 tickets): with overhead =
    -- q * total_weight + r, base = q * weight + r * weight / total_weight
    -- and remainder = r * weight % total_weight
    SELECT month, customer_key, overhead,
           overhead / total_weight * weight
             + overhead % total_weight * weight / total_weight AS base,
           overhead % total_weight * weight % total_weight AS remainder
    FROM totals
), ranked AS (
    SELECT month, customer_key, base,
           overhead - SUM(base) OVER (PARTITION BY month) AS leftover,
           ROW_NUMBER() OVER (PARTITION BY month ORDER BY abs(remainder) DESC, customer_key)
               AS remainder_rank
    FROM based
)
SELECT month, customer_key,
       base + CASE WHEN remainder_rank <= abs(leftover)
                   THEN CASE WHEN leftover > 0 THEN 1 ELSE -1 END
                   ELSE 0 END AS allocated_micros
FROM ranked;

-- Churn over W per segment: the lifetime of 4.8 is 1 / the mean monthly
-- churn rate over W's months with customers at the start, capped. The
-- rates are added up in month order (a running sum), so the mean does not
-- depend on how the engine splits the work.
CREATE OR REPLACE VIEW segment_lifetimes AS
WITH rates AS (
    SELECT c.segment, c.month,
           CAST(c.customers_churned AS DOUBLE) / c.customers_start AS churn
    FROM customer_counts_monthly c
    JOIN trailing_months t ON t.month = c.month
    WHERE c.customers_start > 0
), running AS (
    SELECT segment,
           SUM(churn) OVER (PARTITION BY segment ORDER BY month
                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS total,
           COUNT(*) OVER (PARTITION BY segment) AS months,
           ROW_NUMBER() OVER (PARTITION BY segment ORDER BY month DESC) AS from_last
    FROM rates
), mean AS (
    SELECT segment, total / months AS mean_churn FROM running WHERE from_last = 1
)
SELECT s.segment, m.mean_churn,
       CASE WHEN m.mean_churn IS NULL THEN NULL
            WHEN m.mean_churn = 0 THEN ${max_lifetime_months}
            ELSE LEAST(${max_lifetime_months}, 1.0 / m.mean_churn) END AS lifetime_months
FROM report_segments s
LEFT JOIN mean m ON m.segment = s.segment;

-- Per customer with revenue, direct cost or allocated cost in W, in
-- micro-units; customer_value and value_summary present it. The three
-- sources are stacked and summed in one grouping, each read once.
CREATE OR REPLACE VIEW customer_value_micros AS
WITH amounts AS (
    SELECT customer_key, amount_micros AS revenue, CAST(0 AS BIGINT) AS direct,
           CAST(0 AS BIGINT) AS allocated
    FROM trailing_orders
    UNION ALL
    SELECT customer_key, 0, amount_micros, 0
    FROM cost_lines
    WHERE customer_key IS NOT NULL AND month >= ${trailing_first_month}
    UNION ALL
    SELECT customer_key, 0, 0, allocated_micros
    FROM overhead_allocation
), per_customer AS (
    SELECT customer_key, SUM(revenue) AS revenue_micros, SUM(direct) AS direct_micros,
           SUM(allocated) AS allocated_micros
    FROM amounts
    GROUP BY customer_key
), paying AS (
    -- MRR over W's months with MRR > 0: its sum and the number of months
    -- (W as a range: a join with the 12 months sorted all 15 M rows), and
    -- the snapshot of as_of's month for predicted_clv (4.11)
    SELECT m.customer_key,
           SUM(CASE WHEN m.mrr_micros > 0 THEN m.mrr_micros ELSE 0 END) AS mrr_micros,
           SUM(CASE WHEN m.mrr_micros > 0 THEN 1 ELSE 0 END) AS months,
           SUM(CASE WHEN m.month = ${as_of_month} THEN m.mrr_micros ELSE 0 END)
               AS current_mrr_micros
    FROM customer_mrr_movements m
    WHERE m.month BETWEEN ${trailing_first_month} AND ${as_of_month}
      AND (m.mrr_micros > 0 OR m.month = ${as_of_month})
    GROUP BY m.customer_key
), tenure AS (
    -- m of 4.11 for the customers active at as_of: the periods survived,
    -- their signup month and every later month whose last day is <= as_of
    SELECT customer_key,
           GREATEST(CAST(0 AS BIGINT), CAST(
               (date_part('year', ${last_complete_month}) - date_part('year', signup_date)) * 12
               + date_part('month', ${last_complete_month}) - date_part('month', signup_date)
               + 1 AS BIGINT)) AS tenure_months
    FROM customers
    WHERE signup_date <= ${as_of} AND (churn_date IS NULL OR churn_date > ${as_of})
)
SELECT i.customer_key, cs.customer_id, COALESCE(cs.segment, 'unknown') AS segment,
       i.revenue_micros, i.direct_micros, i.allocated_micros,
       i.revenue_micros - i.direct_micros - i.allocated_micros AS cps_micros,
       CASE WHEN p.months > 0 THEN CAST(p.mrr_micros AS DOUBLE) / p.months / 1000000.0
            ELSE 0.0 END AS mean_mrr,
       t.tenure_months,
       COALESCE(p.current_mrr_micros, 0) / 1000000.0 AS current_mrr
FROM per_customer i
LEFT JOIN customer_segments cs ON cs.customer_key = i.customer_key
LEFT JOIN paying p ON p.customer_key = i.customer_key
LEFT JOIN tenure t ON t.customer_key = i.customer_key;

CREATE OR REPLACE VIEW customer_value AS
SELECT ${as_of} AS as_of, v.customer_id, v.segment,
       v.revenue_micros / 1000000.0 AS revenue,
       v.direct_micros / 1000000.0 AS direct_cost,
       v.allocated_micros / 1000000.0 AS allocated_cost,
       v.cps_micros / 1000000.0 AS cps,
       -- ties in customer_id order, which is customer_key's
       CAST(NTILE(5) OVER (ORDER BY v.cps_micros DESC, v.customer_key) AS BIGINT)
           AS cps_quintile,
       v.mean_mrr * ${gross_margin} * l.lifetime_months AS clv,
       v.tenure_months,
       d.derl_months,
       v.current_mrr * ${gross_margin} * d.derl_months AS predicted_clv
FROM customer_value_micros v
LEFT JOIN segment_lifetimes l ON l.segment = v.segment
-- retention_derl (the sBG model's DERL per segment and tenure, registered
-- with retention_model): no row for a segment without a model
LEFT JOIN retention_derl d
       ON d.segment = v.segment AND d.tenure_months = v.tenure_months;

-- CLV per segment: avg_order_value x purchase_frequency x lifetime x margin.
CREATE OR REPLACE VIEW value_summary AS
WITH purchases AS (
    -- per customer first (a customer has one segment, so the customers of
    -- 'all' are the sum of the segments'): a spillable grouping instead of
    -- COUNT(DISTINCT), whose one set per group cannot spill
    SELECT CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           SUM(CAST(micros AS DECIMAL(38, 0))) / 1000000.0 / SUM(orders) AS avg_order_value,
           CAST(SUM(orders) AS DOUBLE) / COUNT(*) / 12.0 AS purchase_frequency
    FROM (
        SELECT COALESCE(cs.segment, 'unknown') AS segment, p.orders, p.micros
        FROM (
            SELECT customer_key, COUNT(*) AS orders, SUM(amount_micros) AS micros
            FROM trailing_orders
            WHERE kind IN ('subscription', 'addon', 'one_time') AND amount_micros > 0
            GROUP BY customer_key
        ) p
        LEFT JOIN customer_segments cs ON cs.customer_key = p.customer_key
    )
    GROUP BY GROUPING SETS ((segment), ())
), customers AS (
    SELECT CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           COUNT(*) AS customers,
           SUM(CAST(revenue_micros AS DECIMAL(38, 0))) / 1000000.0 AS revenue,
           SUM(CAST(cps_micros AS DECIMAL(38, 0))) / 1000000.0 AS cps_total
    FROM customer_value_micros
    GROUP BY GROUPING SETS ((segment), ())
)
SELECT ${as_of} AS as_of, s.segment,
       p.avg_order_value, p.purchase_frequency, l.lifetime_months,
       p.avg_order_value * p.purchase_frequency * l.lifetime_months * ${gross_margin} AS clv,
       COALESCE(c.customers, 0) AS customers,
       COALESCE(c.revenue, 0.0) AS revenue,
       COALESCE(c.cps_total, 0.0) AS cps_total
FROM report_segments s
LEFT JOIN purchases p ON p.segment = s.segment
LEFT JOIN segment_lifetimes l ON l.segment = s.segment
LEFT JOIN customers c ON c.segment = s.segment;
