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
    JOIN customer_segments cs ON cs.customer_key = c.customer_key
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
SELECT order_id, customer_id, customer_key, period_start, period_end
FROM orders
WHERE kind = 'subscription';

-- The window in which a line's renewal must start: another subscription
-- line of the customer starting after this one's start, within
-- [period_end - 7 days, period_end + grace], is, with dates, a start in
-- [max(period_end - 7 days, period_start + 1 day), period_end + grace].
-- The days are added to the dates as integers (days since 1970-01-01):
-- a date plus an INTERVAL goes through a calendar per row, 0.6 s over
-- the 13.4 M order lines of 1M customers (benches/README.md).
CREATE OR REPLACE VIEW renewal_windows AS
SELECT order_id, customer_id, customer_key, period_start, period_end,
       CAST(GREATEST(CAST(period_end AS INT) - 7, CAST(period_start AS INT) + 1) AS DATE)
           AS window_start,
       CAST(CAST(period_end AS INT) + ${grace_days} AS DATE) AS window_end
FROM subscription_lines;

-- For an analyst: every line and whether it was renewed, i.e. whether the
-- customer's earliest start on or after window_start is at most
-- window_end. The starts and the window starts of a customer in
-- descending date order (a start before a window start of the same day),
-- with a running MIN of the starts seen so far, which at a window start is
-- the earliest start on or after it. The run does not use this view:
-- renewal_customers answers per customer and due month in one grouping,
-- and a test checks that the two agree.
CREATE OR REPLACE VIEW renewal_lines AS
WITH events AS (
    SELECT customer_id, period_start AS at, 0 AS is_probe, period_start AS start_at,
           CAST(NULL AS VARCHAR) AS order_id, CAST(NULL AS DATE) AS period_end,
           CAST(NULL AS DATE) AS window_end
    FROM subscription_lines
    UNION ALL
    SELECT customer_id, window_start AS at, 1 AS is_probe, CAST(NULL AS DATE) AS start_at,
           order_id, period_end, window_end
    FROM renewal_windows
), scanned AS (
    SELECT order_id, customer_id, period_end, window_end, is_probe,
           MIN(start_at) OVER (PARTITION BY customer_id ORDER BY at DESC, is_probe
                               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS next_start
    FROM events
)
SELECT order_id, customer_id, period_end, COALESCE(next_start <= window_end, false) AS renewed
FROM scanned
WHERE is_probe = 1;

-- The renewed lines themselves, for an analyst.
CREATE OR REPLACE VIEW renewed_lines AS
SELECT order_id FROM renewal_lines WHERE renewed;

-- One row per customer and due month (the month containing period_end).
-- renewal_due_months (a Rust aggregate, src/udf/renewal_due_months.rs)
-- takes a customer's lines and windows and answers every line by binary
-- search over the customer's sorted starts: one grouping of the lines by
-- customer instead of sorting lines and windows together and running a
-- window over each customer (several times slower; benches/README.md).
CREATE OR REPLACE VIEW renewal_customers AS
WITH by_customer AS (
    SELECT customer_key,
           renewal_due_months(period_start, window_start, window_end, period_end) AS due_months
    FROM renewal_windows
    GROUP BY customer_key
), with_segment AS (
    SELECT cs.customer_id, COALESCE(cs.segment, 'unknown') AS customer_segment, b.due_months
    FROM by_customer b
    LEFT JOIN customer_segments cs ON cs.customer_key = b.customer_key
), due AS (
    SELECT customer_id, customer_segment AS segment, unnest(due_months) AS due
    FROM with_segment
)
SELECT customer_id,
       due['due_month'] AS due_month,
       due['won'] AS won,
       NOT due['won'] AND due['latest_due_end'] + INTERVAL '${grace_days} days' > ${as_of}
           AS pending,
       segment
FROM due
WHERE due['due_month'] < ${as_of_next_month};

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
