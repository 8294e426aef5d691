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
    SELECT order_id, customer_id, kind, period_start, period_end, amount,
           CAST(GREATEST(1,
               (date_part('year', period_end) * 12 + date_part('month', period_end))
             - (date_part('year', period_start) * 12 + date_part('month', period_start))
           ) AS BIGINT) AS months
    FROM orders
    WHERE kind IN ('subscription', 'addon')
)
SELECT order_id, customer_id, kind, period_start, period_end, amount, months,
       CAST(round(amount * 1000000.0 / months) AS BIGINT) AS monthly_micros,
       round(amount * 1000000.0 / months) / 1000000.0 AS monthly_amount
FROM lines;

-- mrr(c, M) for every customer-month with a line covering M's snapshot day
-- (the month's last day, or as_of in as_of's month), history included.
CREATE OR REPLACE VIEW customer_mrr AS
WITH line_months AS (
    SELECT customer_id,
           unnest(mrr_snapshot_months(period_start, period_end, ${as_of})) AS month,
           monthly_micros
    FROM mrr_lines
)
SELECT customer_id, month, SUM(monthly_micros) AS mrr_micros
FROM line_months
GROUP BY customer_id, month;

-- Every customer-month where mrr or the previous month's mrr may be non-zero,
-- with its movement. Values closer than 0.005 (5000 micro-units) are equal;
-- first match wins.
--
-- One ordered pass over each customer's months (a sort and a streaming
-- window, no self-join): the previous row is the previous month when it is
-- adjacent; a month without an adjacent next month (before as_of's) is
-- followed by a month at 0, the second element of its unnested pair. The
-- first paid month is the paid month where the running count of paid
-- months reaches 1.
CREATE OR REPLACE VIEW customer_mrr_movements AS
WITH ordered AS (
    SELECT customer_id, month, mrr_micros,
           LAG(month) OVER (PARTITION BY customer_id ORDER BY month) AS prev_month,
           LAG(mrr_micros) OVER (PARTITION BY customer_id ORDER BY month) AS prev_month_micros,
           LEAD(month) OVER (PARTITION BY customer_id ORDER BY month) AS next_month,
           SUM(CASE WHEN mrr_micros >= 5000 THEN 1 ELSE 0 END)
               OVER (PARTITION BY customer_id ORDER BY month
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS paid_months_so_far
    FROM customer_mrr
), expanded AS (
    SELECT customer_id, month, mrr_micros, prev_month, prev_month_micros, paid_months_so_far,
           unnest(CASE WHEN month < ${as_of_month}
                            AND (next_month IS NULL
                                 OR next_month <> CAST(month + INTERVAL '1 month' AS DATE))
                       THEN make_array(0, 1) ELSE make_array(0) END) AS following
    FROM ordered
), pairs AS (
    SELECT customer_id,
           CASE WHEN following = 0 THEN month
                ELSE CAST(month + INTERVAL '1 month' AS DATE) END AS month,
           CASE WHEN following = 0 THEN mrr_micros ELSE 0 END AS mrr_micros,
           CASE WHEN following = 1 THEN mrr_micros
                WHEN prev_month = CAST(month - INTERVAL '1 month' AS DATE)
                    THEN prev_month_micros
                ELSE 0 END AS prev_micros,
           following = 0 AND mrr_micros >= 5000 AND paid_months_so_far = 1 AS first_paid
    FROM expanded
)
SELECT p.month, p.customer_id,
       COALESCE(cs.segment, 'unknown') AS segment,
       p.mrr_micros, p.prev_micros,
       CASE
           WHEN abs(p.prev_micros) < 5000 AND p.mrr_micros >= 5000 AND p.first_paid THEN 'new'
           WHEN p.prev_micros >= 5000 AND abs(p.mrr_micros) < 5000 THEN 'churn'
           WHEN abs(p.prev_micros) < 5000 AND p.mrr_micros >= 5000 THEN 'reactivation'
           WHEN p.mrr_micros - p.prev_micros >= 5000 THEN 'expansion'
           WHEN p.prev_micros - p.mrr_micros >= 5000 THEN 'contraction'
           ELSE 'flat'
       END AS movement
FROM pairs p
LEFT JOIN customer_segments cs ON cs.customer_id = p.customer_id;

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

CREATE OR REPLACE VIEW mrr_segment_totals AS
SELECT month, CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
       SUM(mrr_micros) AS mrr,
       SUM(prev_micros) AS prev_mrr,
       SUM(CASE WHEN mrr_micros >= 5000 THEN 1 ELSE 0 END) AS paying_customers,
       SUM(CASE WHEN movement = 'new' THEN mrr_micros ELSE 0 END) AS new_mrr,
       SUM(CASE WHEN movement = 'expansion' THEN mrr_micros - prev_micros ELSE 0 END) AS expansion_mrr,
       SUM(CASE WHEN movement = 'reactivation' THEN mrr_micros ELSE 0 END) AS reactivation_mrr,
       SUM(CASE WHEN movement = 'contraction' THEN mrr_micros - prev_micros ELSE 0 END) AS contraction_mrr,
       SUM(CASE WHEN movement = 'churn' THEN -prev_micros ELSE 0 END) AS churned_mrr
FROM customer_mrr_movements
WHERE month >= ${first_month}
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
