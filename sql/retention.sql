-- Customers, churn, CRR (spec 4.1) and renewals (spec 4.2).

-- Customers per segment by signup month and churn month: all the month
-- counts of 4.1 are conditions on these two months, so the monthly grid
-- joins this small table instead of every customer. The 'all' rows come
-- from the same pass (GROUPING SETS), not from reading customers twice.
CREATE OR REPLACE VIEW customer_cohorts AS
WITH per_customer AS (
    SELECT cs.segment,
           CAST(date_trunc('month', c.signup_date) AS DATE) AS signup_month,
           CAST(date_trunc('month', c.churn_date) AS DATE) AS churn_month
    FROM customers c
    JOIN customer_segments cs ON cs.customer_id = c.customer_id
)
SELECT CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
       signup_month, churn_month, COUNT(*) AS customers
FROM per_customer
GROUP BY GROUPING SETS ((segment, signup_month, churn_month), (signup_month, churn_month));

-- With M = [s, e]: signup_date < s <=> signup_month < M; churn_date >= s
-- <=> churn_month >= M; churn_date <= e <=> churn_month <= M. Computed for
-- the reported months and the trailing 12 (count_month_segments).
CREATE OR REPLACE VIEW customer_counts_monthly AS
SELECT g.month, g.segment,
       COALESCE(SUM(CASE WHEN c.signup_month < g.month
                          AND (c.churn_month IS NULL OR c.churn_month >= g.month)
                         THEN c.customers END), 0) AS customers_start,
       COALESCE(SUM(CASE WHEN c.signup_month = g.month
                         THEN c.customers END), 0) AS customers_new,
       COALESCE(SUM(CASE WHEN c.signup_month <= g.month
                          AND (c.churn_month IS NULL OR c.churn_month > g.month)
                         THEN c.customers END), 0) AS customers_end,
       COALESCE(SUM(CASE WHEN c.signup_month < g.month AND c.churn_month = g.month
                         THEN c.customers END), 0) AS customers_churned
FROM count_month_segments g
LEFT JOIN customer_cohorts c ON c.segment = g.segment
GROUP BY g.month, g.segment;

CREATE OR REPLACE VIEW subscription_lines AS
SELECT order_id, customer_id, period_start, period_end
FROM orders
WHERE kind = 'subscription';

-- Every subscription line and whether it was renewed: another subscription
-- line of the customer starting after this one's start, within
-- [period_end - 7 days, period_end + grace]. With dates, that is the
-- customer's earliest start on or after
--   probe = max(period_end - 7 days, period_start + 1 day)
-- being at most period_end + grace. One pass finds it for every line: the
-- starts and the probes of a customer, in descending date order (a start
-- before a probe of the same day), with a running MIN of the starts seen so
-- far, which at a probe is the earliest start on or after it. A sort and a
-- streaming window: no self-join of the lines.
CREATE OR REPLACE VIEW renewal_lines AS
WITH events AS (
    SELECT customer_id, period_start AS at, 0 AS is_probe, period_start AS start_at,
           CAST(NULL AS VARCHAR) AS order_id, CAST(NULL AS DATE) AS period_end
    FROM subscription_lines
    UNION ALL
    SELECT customer_id,
           GREATEST(period_end - INTERVAL '7 days', period_start + INTERVAL '1 day') AS at,
           1 AS is_probe, CAST(NULL AS DATE) AS start_at, order_id, period_end
    FROM subscription_lines
), scanned AS (
    SELECT order_id, customer_id, period_end, is_probe,
           MIN(start_at) OVER (PARTITION BY customer_id ORDER BY at DESC, is_probe
                               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS next_start
    FROM events
)
SELECT order_id, customer_id, period_end,
       COALESCE(next_start <= period_end + INTERVAL '${grace_days} days', false) AS renewed
FROM scanned
WHERE is_probe = 1;

-- The renewed lines themselves, for an analyst.
CREATE OR REPLACE VIEW renewed_lines AS
SELECT order_id FROM renewal_lines WHERE renewed;

-- One row per customer and due month (the month containing period_end).
CREATE OR REPLACE VIEW renewal_customers AS
WITH per_customer AS (
    SELECT customer_id,
           CAST(date_trunc('month', period_end) AS DATE) AS due_month,
           bool_or(renewed) AS won,
           MAX(period_end) AS latest_due_end
    FROM renewal_lines
    WHERE period_end < ${as_of_next_month}
    GROUP BY customer_id, CAST(date_trunc('month', period_end) AS DATE)
)
SELECT p.customer_id, p.due_month, p.won,
       NOT p.won AND p.latest_due_end + INTERVAL '${grace_days} days' > ${as_of} AS pending,
       COALESCE(cs.segment, 'unknown') AS segment
FROM per_customer p
LEFT JOIN customer_segments cs ON cs.customer_id = p.customer_id;

CREATE OR REPLACE VIEW renewals_monthly AS
WITH counted AS (
    SELECT due_month,
           CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           COUNT(*) AS renewals_due,
           SUM(CASE WHEN won THEN 1 ELSE 0 END) AS renewals_won,
           SUM(CASE WHEN pending THEN 1 ELSE 0 END) AS renewals_pending
    FROM renewal_customers
    GROUP BY GROUPING SETS ((due_month, segment), (due_month))
)
SELECT g.month, g.segment,
       COALESCE(c.renewals_due, 0) AS renewals_due,
       COALESCE(c.renewals_won, 0) AS renewals_won,
       COALESCE(c.renewals_pending, 0) AS renewals_pending
FROM month_segments g
LEFT JOIN counted c ON c.due_month = g.month AND c.segment = g.segment;

CREATE OR REPLACE VIEW retention_monthly AS
SELECT c.month, c.segment,
       c.customers_start, c.customers_new, c.customers_end, c.customers_churned,
       CASE WHEN c.customers_start > 0
            THEN 100.0 * c.customers_churned / c.customers_start END AS churn_rate,
       CASE WHEN c.customers_start > 0
            THEN 100.0 * (c.customers_end - c.customers_new) / c.customers_start END AS crr,
       r.renewals_due, r.renewals_won, r.renewals_pending,
       CASE WHEN r.renewals_due - r.renewals_pending > 0
            THEN 100.0 * r.renewals_won / (r.renewals_due - r.renewals_pending) END
           AS renewal_rate
FROM customer_counts_monthly c
JOIN renewals_monthly r ON r.month = c.month AND r.segment = c.segment;
