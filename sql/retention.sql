-- Customers, churn, CRR (spec 4.1) and renewals (spec 4.2).

-- Customers per segment by signup month and churn month: all the month
-- counts of 4.1 are conditions on these two months, so the monthly grid
-- joins this small table instead of every customer.
CREATE OR REPLACE VIEW customer_cohorts AS
WITH per_customer AS (
    SELECT cs.segment,
           CAST(date_trunc('month', c.signup_date) AS DATE) AS signup_month,
           CAST(date_trunc('month', c.churn_date) AS DATE) AS churn_month
    FROM customers c
    JOIN customer_segments cs ON cs.customer_id = c.customer_id
), with_all AS (
    SELECT segment, signup_month, churn_month FROM per_customer
    UNION ALL
    SELECT 'all', signup_month, churn_month FROM per_customer
)
SELECT segment, signup_month, churn_month, COUNT(*) AS customers
FROM with_all
GROUP BY segment, signup_month, churn_month;

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

-- Due lines that were renewed: another subscription line of the customer
-- starting after this one's start, within [period_end - 7 days,
-- period_end + grace]. Both sides are put in fixed bins of the window's
-- length, so a line's window touches at most two bins and the self-join is
-- an equi-join on (customer, bin) rather than every line of a customer
-- against every other.
CREATE OR REPLACE VIEW renewed_lines AS
WITH due AS (
    SELECT order_id, customer_id, period_start,
           period_end - INTERVAL '7 days' AS window_from,
           period_end + INTERVAL '${grace_days} days' AS window_to
    FROM subscription_lines
), due_bins AS (
    SELECT order_id, customer_id, period_start, window_from, window_to,
           date_bin(INTERVAL '${renewal_bin_days} days', CAST(window_from AS TIMESTAMP),
                    TIMESTAMP '1970-01-01') AS bin
    FROM due
    UNION
    SELECT order_id, customer_id, period_start, window_from, window_to,
           date_bin(INTERVAL '${renewal_bin_days} days', CAST(window_to AS TIMESTAMP),
                    TIMESTAMP '1970-01-01') AS bin
    FROM due
), starts AS (
    SELECT customer_id, period_start,
           date_bin(INTERVAL '${renewal_bin_days} days', CAST(period_start AS TIMESTAMP),
                    TIMESTAMP '1970-01-01') AS bin
    FROM subscription_lines
)
SELECT DISTINCT d.order_id
FROM due_bins d
JOIN starts s ON s.customer_id = d.customer_id AND s.bin = d.bin
WHERE s.period_start > d.period_start
  AND s.period_start >= d.window_from
  AND s.period_start <= d.window_to;

-- One row per customer and due month (the month containing period_end).
CREATE OR REPLACE VIEW renewal_customers AS
WITH lines AS (
    SELECT l.customer_id,
           CAST(date_trunc('month', l.period_end) AS DATE) AS due_month,
           l.period_end,
           r.order_id IS NOT NULL AS renewed
    FROM subscription_lines l
    LEFT JOIN renewed_lines r ON r.order_id = l.order_id
    WHERE l.period_end < ${as_of_next_month}
), per_customer AS (
    SELECT customer_id, due_month,
           bool_or(renewed) AS won,
           MAX(period_end) AS latest_due_end
    FROM lines
    GROUP BY customer_id, due_month
)
SELECT p.customer_id, p.due_month, p.won,
       NOT p.won AND p.latest_due_end + INTERVAL '${grace_days} days' > ${as_of} AS pending,
       COALESCE(cs.segment, 'unknown') AS segment
FROM per_customer p
LEFT JOIN customer_segments cs ON cs.customer_id = p.customer_id;

CREATE OR REPLACE VIEW renewals_monthly AS
WITH with_all AS (
    SELECT due_month, segment, won, pending FROM renewal_customers
    UNION ALL
    SELECT due_month, 'all', won, pending FROM renewal_customers
), counted AS (
    SELECT due_month, segment,
           COUNT(*) AS renewals_due,
           SUM(CASE WHEN won THEN 1 ELSE 0 END) AS renewals_won,
           SUM(CASE WHEN pending THEN 1 ELSE 0 END) AS renewals_pending
    FROM with_all
    GROUP BY due_month, segment
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
