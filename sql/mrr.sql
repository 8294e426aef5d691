-- MRR and its movements (spec 4.3).
--
-- Amounts are carried as whole micro-units (BIGINT, 1e-6 of the currency)
-- from the monthly amount on: integer sums are exact, so a run gives the
-- same numbers however the engine splits the work (float sums would differ
-- in the last bits between runs). Outputs convert back to DOUBLE.

-- Subscription and add-on lines with their monthly amount: amount / n,
-- n = calendar months between period_start and period_end, at least 1.
CREATE OR REPLACE VIEW mrr_lines AS
WITH lines AS (
    SELECT order_id, customer_id, customer_key, kind, order_date, period_start, period_end,
           amount,
           CAST(GREATEST(1,
               (date_part('year', period_end) * 12 + date_part('month', period_end))
             - (date_part('year', period_start) * 12 + date_part('month', period_start))
           ) AS BIGINT) AS months
    FROM orders
    WHERE kind IN ('subscription', 'addon')
)
SELECT order_id, customer_id, customer_key, kind, order_date, period_start, period_end, amount,
       months,
       -- TRY_CAST: a clean line always fits (|amount| <= 9e12), but a filter
       -- on the clean rows may be evaluated beside this expression, on a
       -- rejected line too, which must not fail the run
       TRY_CAST(round(amount * 1000000.0 / months) AS BIGINT) AS monthly_micros,
       round(amount * 1000000.0 / months) / 1000000.0 AS monthly_amount
FROM lines;

-- Every customer-month where mrr or the previous month's mrr may be
-- non-zero: the months with lines and the month after each (before
-- as_of's), with mrr(c, M), mrr(c, M - 1), whether lines cover M, and the
-- customer's first month with mrr >= 0.005 (5000 micro-units).
-- customer_mrr_months (a Rust aggregate, src/udf/customer_mrr_months.rs)
-- works this out from each customer's lines in one grouping by customer:
-- grouping the line months by customer and month instead (a group per
-- customer-month) and joining each customer's first paid month took twice
-- as long and spilled. Segments join the 1 M customers, not their months.
CREATE OR REPLACE VIEW customer_mrr_pairs AS
WITH by_customer AS (
    SELECT customer_key,
           customer_mrr_months(period_start, period_end, monthly_micros, ${as_of},
                               CAST(5000 AS BIGINT)) AS months
    FROM mrr_lines
    GROUP BY customer_key
), with_segment AS (
    SELECT b.customer_key, cs.customer_id, COALESCE(cs.segment, 'unknown') AS customer_segment,
           b.months
    FROM by_customer b
    LEFT JOIN customer_segments cs ON cs.customer_key = b.customer_key
), entries AS (
    SELECT customer_key, customer_id, customer_segment AS segment, unnest(months) AS m
    FROM with_segment
)
SELECT customer_key, customer_id, segment,
       m['month'] AS month,
       m['mrr_micros'] AS mrr_micros,
       m['prev_micros'] AS prev_micros,
       m['has_lines'] AS has_lines,
       m['first_paid_month'] AS first_paid_month
FROM entries;

-- mrr(c, M) for every customer-month with a line covering M's snapshot day
-- (the month's last day, or as_of in as_of's month), history included.
CREATE OR REPLACE VIEW customer_mrr AS
SELECT customer_id, customer_key, month, mrr_micros
FROM customer_mrr_pairs
WHERE has_lines;

-- Each customer-month's movement. Values closer than 0.005 (5000
-- micro-units) are equal; first match wins.
CREATE OR REPLACE VIEW customer_mrr_movements AS
SELECT month, customer_id, customer_key, segment, mrr_micros, prev_micros,
       CASE
           WHEN abs(prev_micros) < 5000 AND mrr_micros >= 5000
                AND month = first_paid_month THEN 'new'
           WHEN prev_micros >= 5000 AND abs(mrr_micros) < 5000 THEN 'churn'
           WHEN abs(prev_micros) < 5000 AND mrr_micros >= 5000 THEN 'reactivation'
           WHEN mrr_micros - prev_micros >= 5000 THEN 'expansion'
           WHEN prev_micros - mrr_micros >= 5000 THEN 'contraction'
           ELSE 'flat'
       END AS movement
FROM customer_mrr_pairs;

-- Output: reported months only, customer-months with mrr or prev_mrr > 0.
CREATE OR REPLACE VIEW mrr_movements AS
SELECT month, customer_id, segment,
       mrr_micros / 1000000.0 AS mrr,
       prev_micros / 1000000.0 AS prev_mrr,
       movement,
       (mrr_micros - prev_micros) / 1000000.0 AS delta
FROM customer_mrr_movements
WHERE month >= ${first_month}
  AND (mrr_micros >= 5000 OR prev_micros >= 5000);

-- Summed in two steps: first per month, segment, movement and paying flag
-- (a few dozen groups a month, each row read once and only added), then
-- those sums per segment and for 'all'. Grouping sets over the customer
-- rows themselves evaluated a CASE per total for every row and every set.
CREATE OR REPLACE VIEW mrr_segment_totals AS
WITH by_movement AS (
    -- one customer's month fits 64-bit micro-units (a line is at most
    -- 9e12), a month's total over every customer may not: a 64-bit sum
    -- would wrap silently past 9.2e12 currency units (360 M USD in VND)
    SELECT month, segment, movement, mrr_micros >= 5000 AS paying,
           SUM(CAST(mrr_micros AS DECIMAL(38, 0))) AS mrr,
           SUM(CAST(prev_micros AS DECIMAL(38, 0))) AS prev,
           COUNT(*) AS customers
    FROM customer_mrr_movements
    WHERE month >= ${first_month}
    GROUP BY month, segment, movement, mrr_micros >= 5000
)
SELECT month, CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
       SUM(mrr) AS mrr,
       SUM(prev) AS prev_mrr,
       SUM(CASE WHEN paying THEN customers ELSE 0 END) AS paying_customers,
       SUM(CASE WHEN movement = 'new' THEN mrr ELSE 0 END) AS new_mrr,
       SUM(CASE WHEN movement = 'expansion' THEN mrr - prev ELSE 0 END) AS expansion_mrr,
       SUM(CASE WHEN movement = 'reactivation' THEN mrr ELSE 0 END) AS reactivation_mrr,
       SUM(CASE WHEN movement = 'contraction' THEN mrr - prev ELSE 0 END) AS contraction_mrr,
       SUM(CASE WHEN movement = 'churn' THEN -prev ELSE 0 END) AS churned_mrr
FROM by_movement
GROUP BY GROUPING SETS ((month, segment), (month));

-- Sums in micro-units, exact; converted to currency units once, here.
CREATE OR REPLACE VIEW mrr_monthly AS
WITH t AS (
    SELECT g.month, g.segment,
           COALESCE(t.mrr, 0) AS mrr,
           COALESCE(t.prev_mrr, 0) AS prev_mrr,
           COALESCE(t.paying_customers, 0) AS paying_customers,
           COALESCE(t.new_mrr, 0) AS new_mrr,
           COALESCE(t.expansion_mrr, 0) AS expansion_mrr,
           COALESCE(t.reactivation_mrr, 0) AS reactivation_mrr,
           COALESCE(t.contraction_mrr, 0) AS contraction_mrr,
           COALESCE(t.churned_mrr, 0) AS churned_mrr
    FROM month_segments g
    LEFT JOIN mrr_segment_totals t ON t.month = g.month AND t.segment = g.segment
)
SELECT month, segment,
       mrr / 1000000.0 AS mrr,
       paying_customers,
       CASE WHEN paying_customers > 0 THEN mrr / 1000000.0 / paying_customers END AS arpa,
       new_mrr / 1000000.0 AS new_mrr,
       expansion_mrr / 1000000.0 AS expansion_mrr,
       reactivation_mrr / 1000000.0 AS reactivation_mrr,
       contraction_mrr / 1000000.0 AS contraction_mrr,
       churned_mrr / 1000000.0 AS churned_mrr,
       (new_mrr + expansion_mrr + reactivation_mrr + contraction_mrr + churned_mrr) / 1000000.0
           AS net_new_mrr,
       CASE WHEN prev_mrr > 0
            THEN 100.0 * (prev_mrr + expansion_mrr + contraction_mrr + churned_mrr) / prev_mrr
       END AS nrr,
       CASE WHEN prev_mrr > 0
            THEN 100.0 * (prev_mrr + contraction_mrr + churned_mrr) / prev_mrr
       END AS grr,
       CASE WHEN contraction_mrr + churned_mrr < 0
            THEN CAST(new_mrr + reactivation_mrr + expansion_mrr AS DOUBLE)
                 / -(contraction_mrr + churned_mrr)
       END AS quick_ratio
FROM t;
