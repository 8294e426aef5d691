-- The benchmark peer's SQL: the KPIs of ../shared/kpi-spec.md written as a
-- DuckDB job, run by benches/peer_duckdb.py.
--
-- Each `-- @step NAME` section is one timed step (`dimensions` is timed
-- with validate, after the driver has fixed the reported months); the
-- driver runs a section's statements in one go. Job settings arrive as
-- DuckDB variables (getvariable('as_of'), ...), set by the driver from the
-- job file, so this file is static apart from ${segment_by}, the customers
-- column to segment by, which is an identifier and cannot be a variable. The driver also creates
-- the `<t>_typed` views (the inputs cast to the spec's logical types), the
-- `kpi_months`/`trailing_months` tables and the `feedback_phrases` table.
--
-- Intermediate results every later step reads are TEMP tables (computed
-- once, spilled by DuckDB when over memory_limit); output tables are TEMP
-- tables too, so a step's time is its own and the write step only writes.
--
-- Customers are joined and grouped by customer_key, an integer surrogate
-- key given by customer_directory and carried by every checked row of a
-- known customer (a dimension key: integers hash, compare and sort faster
-- than strings); customer_id is looked up in customer_segments for output.
--
-- Money: a line's monthly amount and every money sum are carried as whole
-- micro-units (BIGINT/HUGEINT), the convention cskpi documents ("Exact money
-- sums"). Sums of integers are exact whatever the thread count, which is what
-- lets the outputs be compared with cskpi's at 1e-9.

-- @step validate

-- The calendar month (first day) of a date or timestamp.
CREATE OR REPLACE TEMP MACRO month_of(d) AS CAST(date_trunc('month', d) AS DATE);
-- Micro-units to currency units.
CREATE OR REPLACE TEMP MACRO money(micros) AS CAST(micros AS DOUBLE) / 1000000;
-- x / y as DOUBLE, null when y is 0 (the spec: a zero denominator gives null).
CREATE OR REPLACE TEMP MACRO ratio(x, y) AS
    CASE WHEN y <> 0 THEN CAST(x AS DOUBLE) / y END;
-- The same as a percentage (100 * x / y, in that order, like cskpi).
CREATE OR REPLACE TEMP MACRO pct(x, y) AS
    CASE WHEN y <> 0 THEN 100 * CAST(x AS DOUBLE) / y END;

-- Every customer_id in the input, visible or not, with its first signup:
-- "unknown customer" means absent from the input altogether, and rows whose
-- customer first signed up after as_of are invisible (not rejects). Also
-- how many visible rows carry the id (more than one: a duplicate key), and
-- its customer_key: its rank in customer_id order (so ordering by the key
-- is ordering by customer_id).
CREATE OR REPLACE TEMP TABLE customer_directory AS
SELECT customer_id, first_signup_date, visible_rows,
       CAST(row_number() OVER (ORDER BY customer_id) AS INTEGER) AS customer_key
FROM (
    SELECT customer_id, min(signup_date) AS first_signup_date,
           count(*) FILTER (signup_date IS NULL OR signup_date <= getvariable('as_of')) AS visible_rows
    FROM customers_typed
    WHERE customer_id IS NOT NULL
    GROUP BY customer_id
);

-- Each `<t>_checked` holds the visible rows with customer_key (null for an
-- unknown or missing customer_id) and reject_reason (null = clean): the first reason that applies, in the spec's order (null required
-- column, duplicate key, unknown kind/survey/category, unknown customer,
-- value rules), and reject_key for the rejected rows.
--
-- Duplicate keys: every visible row whose key has another visible copy is
-- rejected. The keys are found first, from the key columns alone, and the
-- checked rows then join that (small) list; a window count over the whole
-- rows sorted every input row with all its columns (47 s of the 1M run's
-- usage). `<t>_key_repeats`: 64-bit hashes of the keys that occur more than
-- once among the rows visible by date (null keys are rejected as nulls
-- anyway), a superset of the duplicated keys: the customer-side visibility
-- is not looked up, and a hash collision only adds a candidate.
-- `<t>_duplicates`: the keys among those candidates that really repeat among
-- the visible rows.
CREATE OR REPLACE TEMP TABLE customers_checked AS
SELECT *, CASE WHEN reject_reason IS NOT NULL THEN customer_id END AS reject_key
FROM (
    SELECT c.*, d.customer_key,
           CASE
               WHEN c.customer_id IS NULL THEN 'null in required column customer_id'
               WHEN c.signup_date IS NULL THEN 'null in required column signup_date'
               WHEN d.visible_rows > 1 THEN 'duplicate key'
               WHEN c.churn_date < c.signup_date THEN 'churn_date < signup_date'
           END AS reject_reason
    FROM (
        -- a churn after as_of has not happened yet
        SELECT * REPLACE (CASE WHEN churn_date <= getvariable('as_of') THEN churn_date END AS churn_date)
        FROM customers_typed
        WHERE signup_date IS NULL OR signup_date <= getvariable('as_of')
    ) c
    LEFT JOIN customer_directory d ON d.customer_id = c.customer_id
);

CREATE OR REPLACE TEMP TABLE orders_key_repeats AS
SELECT hash(order_id) AS key_hash
FROM orders_typed
WHERE order_id IS NOT NULL AND (order_date IS NULL OR order_date <= getvariable('as_of'))
GROUP BY ALL HAVING count(*) > 1;

CREATE OR REPLACE TEMP TABLE orders_duplicates AS
SELECT o.order_id
FROM orders_typed o
LEFT JOIN customer_directory d ON d.customer_id = o.customer_id
WHERE hash(o.order_id) IN (SELECT key_hash FROM orders_key_repeats)
  AND (o.order_date IS NULL OR o.order_date <= getvariable('as_of'))
  AND (d.first_signup_date IS NULL OR d.first_signup_date <= getvariable('as_of'))
GROUP BY ALL HAVING count(*) > 1;

CREATE OR REPLACE TEMP TABLE orders_checked AS
SELECT *, CASE WHEN reject_reason IS NOT NULL THEN order_id END AS reject_key
FROM (
    SELECT o.*, d.customer_key,
           CASE
               WHEN o.order_id IS NULL THEN 'null in required column order_id'
               WHEN o.customer_id IS NULL THEN 'null in required column customer_id'
               WHEN o.order_date IS NULL THEN 'null in required column order_date'
               WHEN o.amount IS NULL THEN 'null in required column amount'
               WHEN o.kind IS NULL THEN 'null in required column kind'
               WHEN x.order_id IS NOT NULL THEN 'duplicate key'
               WHEN o.kind NOT IN ('subscription', 'addon', 'one_time', 'refund') THEN 'unknown kind'
               WHEN d.customer_id IS NULL THEN 'unknown customer_id'
               WHEN o.kind IN ('subscription', 'addon')
                    AND (o.period_start IS NULL OR o.period_end IS NULL) THEN 'missing service period'
               WHEN o.kind IN ('subscription', 'addon')
                    AND o.period_end <= o.period_start THEN 'period_end <= period_start'
           END AS reject_reason
    FROM orders_typed o
    LEFT JOIN customer_directory d ON d.customer_id = o.customer_id
    LEFT JOIN orders_duplicates x ON x.order_id = o.order_id
    WHERE (o.order_date IS NULL OR o.order_date <= getvariable('as_of'))
      AND (d.first_signup_date IS NULL OR d.first_signup_date <= getvariable('as_of'))
);

CREATE OR REPLACE TEMP TABLE tickets_key_repeats AS
SELECT hash(ticket_id) AS key_hash
FROM tickets_typed
WHERE ticket_id IS NOT NULL AND (opened_at IS NULL OR opened_at < getvariable('as_of_end'))
GROUP BY ALL HAVING count(*) > 1;

CREATE OR REPLACE TEMP TABLE tickets_duplicates AS
SELECT t.ticket_id
FROM tickets_typed t
LEFT JOIN customer_directory d ON d.customer_id = t.customer_id
WHERE hash(t.ticket_id) IN (SELECT key_hash FROM tickets_key_repeats)
  AND (t.opened_at IS NULL OR t.opened_at < getvariable('as_of_end'))
  AND (d.first_signup_date IS NULL OR d.first_signup_date <= getvariable('as_of'))
GROUP BY ALL HAVING count(*) > 1;

CREATE OR REPLACE TEMP TABLE tickets_checked AS
SELECT *, CASE WHEN reject_reason IS NOT NULL THEN ticket_id END AS reject_key
FROM (
    SELECT t.*, d.customer_key,
           CASE
               WHEN t.ticket_id IS NULL THEN 'null in required column ticket_id'
               WHEN t.customer_id IS NULL THEN 'null in required column customer_id'
               WHEN t.opened_at IS NULL THEN 'null in required column opened_at'
               WHEN t.contacts IS NULL THEN 'null in required column contacts'
               WHEN x.ticket_id IS NOT NULL THEN 'duplicate key'
               WHEN d.customer_id IS NULL THEN 'unknown customer_id'
               WHEN t.contacts < 1 THEN 'contacts < 1'
               WHEN t.resolved_at < t.opened_at THEN 'resolved_at < opened_at'
           END AS reject_reason
    FROM (
        -- a resolution after the as_of day has not happened yet
        SELECT * REPLACE (
                   CASE WHEN resolved_at < getvariable('as_of_end') THEN resolved_at END AS resolved_at,
                   coalesce(reopened, false) AS reopened)
        FROM tickets_typed
    ) t
    LEFT JOIN customer_directory d ON d.customer_id = t.customer_id
    LEFT JOIN tickets_duplicates x ON x.ticket_id = t.ticket_id
    WHERE (t.opened_at IS NULL OR t.opened_at < getvariable('as_of_end'))
      AND (d.first_signup_date IS NULL OR d.first_signup_date <= getvariable('as_of'))
);

-- Key (response_id, item); nps and csat rows have no item ('' in the key).
CREATE OR REPLACE TEMP TABLE surveys_key_repeats AS
SELECT hash(response_id, coalesce(item, '')) AS key_hash
FROM surveys_typed
WHERE response_id IS NOT NULL AND (responded_at IS NULL OR responded_at < getvariable('as_of_end'))
GROUP BY ALL HAVING count(*) > 1;

CREATE OR REPLACE TEMP TABLE surveys_duplicates AS
SELECT s.response_id, coalesce(s.item, '') AS item
FROM surveys_typed s
LEFT JOIN customer_directory d ON d.customer_id = s.customer_id
WHERE hash(s.response_id, coalesce(s.item, '')) IN (SELECT key_hash FROM surveys_key_repeats)
  AND (s.responded_at IS NULL OR s.responded_at < getvariable('as_of_end'))
  AND (d.first_signup_date IS NULL OR d.first_signup_date <= getvariable('as_of'))
GROUP BY ALL HAVING count(*) > 1;

CREATE OR REPLACE TEMP TABLE surveys_checked AS
SELECT *, CASE WHEN reject_reason IS NOT NULL THEN response_id || '|' || coalesce(item, '') END AS reject_key
FROM (
    SELECT s.*, d.customer_key,
           CASE
               WHEN s.response_id IS NULL THEN 'null in required column response_id'
               WHEN s.customer_id IS NULL THEN 'null in required column customer_id'
               WHEN s.responded_at IS NULL THEN 'null in required column responded_at'
               WHEN s.survey IS NULL THEN 'null in required column survey'
               WHEN s.score IS NULL THEN 'null in required column score'
               WHEN s.survey = 'csi' AND s.item IS NULL THEN 'null in required column item'
               WHEN x.response_id IS NOT NULL THEN 'duplicate key'
               WHEN s.survey NOT IN ('nps', 'csat', 'csi') THEN 'unknown survey'
               WHEN d.customer_id IS NULL THEN 'unknown customer_id'
               WHEN s.survey = 'nps' AND (s.score < 0 OR s.score > 10) THEN 'score out of range'
               WHEN s.survey = 'csat' AND (s.score < 1 OR s.score > 5) THEN 'score out of range'
               WHEN s.survey = 'csi' AND (s.score < getvariable('csi_scale_min')
                                          OR s.score > getvariable('csi_scale_max')) THEN 'score out of range'
               WHEN s.survey IN ('nps', 'csat') AND s.score <> round(s.score) THEN 'score not an integer'
           END AS reject_reason
    FROM surveys_typed s
    LEFT JOIN customer_directory d ON d.customer_id = s.customer_id
    LEFT JOIN surveys_duplicates x ON x.response_id = s.response_id AND x.item = coalesce(s.item, '')
    WHERE (s.responded_at IS NULL OR s.responded_at < getvariable('as_of_end'))
      AND (d.first_signup_date IS NULL OR d.first_signup_date <= getvariable('as_of'))
);

-- Key (customer_id, day). usage_key_repeats is made by peer_duckdb.py
-- (`usage_key_repeats`), a month of days at a time.

CREATE OR REPLACE TEMP TABLE usage_duplicates AS
SELECT u.customer_id, u.day
FROM usage_typed u
LEFT JOIN customer_directory d ON d.customer_id = u.customer_id
WHERE hash(u.customer_id, u.day) IN (SELECT key_hash FROM usage_key_repeats)
  AND u.day <= getvariable('as_of')
  AND (d.first_signup_date IS NULL OR d.first_signup_date <= getvariable('as_of'))
GROUP BY ALL HAVING count(*) > 1;

CREATE OR REPLACE TEMP TABLE usage_checked AS
SELECT *, CASE WHEN reject_reason IS NOT NULL THEN customer_id || '|' || CAST(day AS VARCHAR) END AS reject_key
FROM (
    SELECT u.*, d.customer_key,
           CASE
               WHEN u.customer_id IS NULL THEN 'null in required column customer_id'
               WHEN u.day IS NULL THEN 'null in required column day'
               WHEN u.active_users IS NULL THEN 'null in required column active_users'
               WHEN u.events IS NULL THEN 'null in required column events'
               WHEN x.customer_id IS NOT NULL THEN 'duplicate key'
               WHEN d.customer_id IS NULL THEN 'unknown customer_id'
               WHEN u.active_users < 0 OR u.events < 0 THEN 'negative usage'
           END AS reject_reason
    FROM usage_typed u
    LEFT JOIN customer_directory d ON d.customer_id = u.customer_id
    LEFT JOIN usage_duplicates x ON x.customer_id = u.customer_id AND x.day = u.day
    WHERE (u.day IS NULL OR u.day <= getvariable('as_of'))
      AND (d.first_signup_date IS NULL OR d.first_signup_date <= getvariable('as_of'))
);

-- Costs have no key; a cost belongs to a month, kept as its first day.
CREATE OR REPLACE TEMP TABLE costs_checked AS
SELECT c.* REPLACE (month_of(c.month) AS month), d.customer_key,
       CAST(NULL AS VARCHAR) AS reject_key,
       CASE
           WHEN c.month IS NULL THEN 'null in required column month'
           WHEN c.category IS NULL THEN 'null in required column category'
           WHEN c.amount IS NULL THEN 'null in required column amount'
           WHEN c.category NOT IN ('acquisition', 'retention', 'service') THEN 'unknown category'
           WHEN c.customer_id IS NOT NULL AND d.customer_id IS NULL THEN 'unknown customer_id'
       END AS reject_reason
FROM costs_typed c
LEFT JOIN customer_directory d ON d.customer_id = c.customer_id
WHERE (c.month IS NULL OR c.month < getvariable('as_of_next_month'))
  AND (d.first_signup_date IS NULL OR d.first_signup_date <= getvariable('as_of'));

-- The clean rows every KPI reads.
CREATE OR REPLACE TEMP VIEW customers AS
SELECT * EXCLUDE (reject_key, reject_reason) FROM customers_checked WHERE reject_reason IS NULL;
CREATE OR REPLACE TEMP VIEW orders AS
SELECT * EXCLUDE (reject_key, reject_reason) FROM orders_checked WHERE reject_reason IS NULL;
CREATE OR REPLACE TEMP VIEW tickets AS
SELECT * EXCLUDE (reject_key, reject_reason) FROM tickets_checked WHERE reject_reason IS NULL;
CREATE OR REPLACE TEMP VIEW surveys AS
SELECT * EXCLUDE (reject_key, reject_reason) FROM surveys_checked WHERE reject_reason IS NULL;
CREATE OR REPLACE TEMP VIEW usage AS
SELECT * EXCLUDE (reject_key, reject_reason) FROM usage_checked WHERE reject_reason IS NULL;
CREATE OR REPLACE TEMP VIEW costs AS
SELECT * EXCLUDE (reject_key, reject_reason) FROM costs_checked WHERE reject_reason IS NULL;

-- `rejects` (input, key, reason, raw_row as JSON) is created by the driver:
-- the raw row's columns are the input's, which only the driver knows.

-- @step dimensions

-- Every customer of the directory by customer_key, with its customer_id
-- and current segment: null -> 'unknown', and 'unknown' too for a customer
-- without a clean row (rejected), whose orders or tickets still count.
-- `listed`: one of the clean customers.
CREATE OR REPLACE TEMP TABLE customer_segments AS
SELECT d.customer_key, d.customer_id,
       coalesce(CAST(c.${segment_by} AS VARCHAR), 'unknown') AS segment,
       c.customer_key IS NOT NULL AS listed
FROM customer_directory d
LEFT JOIN customers c ON c.customer_key = d.customer_key;

-- 'all' plus every segment value of the visible customers.
CREATE OR REPLACE TEMP TABLE report_segments AS
SELECT 'all' AS segment
UNION
SELECT DISTINCT segment FROM customer_segments WHERE listed;

-- The grid every monthly table fills, even where there is nothing to count.
CREATE OR REPLACE TEMP VIEW month_segments AS
SELECT m.month, s.segment FROM kpi_months m CROSS JOIN report_segments s;

-- Customer counts are needed for the reported months and for W (the
-- trailing 12 months, whose churn gives the CLV lifetime even before run.from).
CREATE OR REPLACE TEMP VIEW count_month_segments AS
SELECT m.month, s.segment
FROM (SELECT month FROM kpi_months UNION SELECT month FROM trailing_months) m
CROSS JOIN report_segments s;

-- @step retention

-- Spec 4.1. Every count is a condition on a customer's signup month and
-- churn month (signup_date < s <=> signup month < M, ...), so customers are
-- first grouped by (segment, signup month, churn month) and the month grid
-- joins that small table instead of every customer. GROUPING SETS give the
-- 'all' rows in the same pass.
CREATE OR REPLACE TEMP TABLE customer_counts_monthly AS
WITH cohorts AS (
    SELECT CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           signup_month, churn_month, count(*) AS customers
    FROM (
        SELECT s.segment, month_of(c.signup_date) AS signup_month,
               month_of(c.churn_date) AS churn_month
        FROM customers c
        JOIN customer_segments s ON s.customer_key = c.customer_key
    )
    GROUP BY GROUPING SETS ((segment, signup_month, churn_month), (signup_month, churn_month))
)
SELECT g.month, g.segment,
       CAST(coalesce(sum(c.customers) FILTER (
           c.signup_month < g.month AND (c.churn_month IS NULL OR c.churn_month >= g.month)), 0)
           AS BIGINT) AS customers_start,
       CAST(coalesce(sum(c.customers) FILTER (c.signup_month = g.month), 0)
           AS BIGINT) AS customers_new,
       CAST(coalesce(sum(c.customers) FILTER (
           c.signup_month <= g.month AND (c.churn_month IS NULL OR c.churn_month > g.month)), 0)
           AS BIGINT) AS customers_end,
       CAST(coalesce(sum(c.customers) FILTER (
           c.signup_month < g.month AND c.churn_month = g.month), 0)
           AS BIGINT) AS customers_churned
FROM count_month_segments g
LEFT JOIN cohorts c ON c.segment = g.segment
GROUP BY g.month, g.segment;

-- Spec 4.2. A due line L is renewed by a subscription line L2 of the same
-- customer with L2.start > L.start and L.end - 7 <= L2.start <= L.end + grace.
-- With whole days that is: the earliest L2.start at or after
-- greatest(L.start + 1, L.end - 7) is at most L.end + grace, an ASOF join
-- (one probe per due line instead of every line pair of a customer).
CREATE OR REPLACE TEMP TABLE renewals_monthly AS
WITH subscription_lines AS (
    SELECT customer_key, period_start, period_end
    FROM orders
    WHERE kind = 'subscription'
), due AS (
    SELECT customer_key, period_start, period_end,
           greatest(period_start + 1, period_end - 7) AS window_from
    FROM subscription_lines
    WHERE period_end < getvariable('as_of_next_month')
), due_lines AS (
    SELECT d.customer_key, month_of(d.period_end) AS due_month, d.period_end,
           coalesce(r.period_start <= d.period_end + getvariable('grace_days'), false) AS renewed
    FROM due d
    ASOF LEFT JOIN subscription_lines r
      ON r.customer_key = d.customer_key AND r.period_start >= d.window_from
), per_customer AS (
    -- counted per customer and due month; pending: not won and the latest
    -- due line's grace window still open at as_of
    SELECT p.due_month, coalesce(s.segment, 'unknown') AS segment, p.won,
           NOT p.won AND p.latest_due_end + getvariable('grace_days') > getvariable('as_of') AS pending
    FROM (
        SELECT customer_key, due_month, bool_or(renewed) AS won, max(period_end) AS latest_due_end
        FROM due_lines
        GROUP BY customer_key, due_month
    ) p
    LEFT JOIN customer_segments s ON s.customer_key = p.customer_key
), counted AS (
    SELECT due_month,
           CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           count(*) AS renewals_due,
           count(*) FILTER (won) AS renewals_won,
           count(*) FILTER (pending) AS renewals_pending
    FROM per_customer
    GROUP BY GROUPING SETS ((due_month, segment), (due_month))
)
SELECT g.month, g.segment,
       coalesce(c.renewals_due, 0) AS renewals_due,
       coalesce(c.renewals_won, 0) AS renewals_won,
       coalesce(c.renewals_pending, 0) AS renewals_pending
FROM month_segments g
LEFT JOIN counted c ON c.due_month = g.month AND c.segment = g.segment;

CREATE OR REPLACE TEMP TABLE retention_monthly AS
SELECT c.month, c.segment,
       c.customers_start, c.customers_new, c.customers_end, c.customers_churned,
       pct(c.customers_churned, c.customers_start) AS churn_rate,
       pct(c.customers_end - c.customers_new, c.customers_start) AS crr,
       r.renewals_due, r.renewals_won, r.renewals_pending,
       pct(r.renewals_won, r.renewals_due - r.renewals_pending) AS renewal_rate
FROM customer_counts_monthly c
JOIN renewals_monthly r ON r.month = c.month AND r.segment = c.segment;

-- @step mrr

-- Spec 4.3. A line's monthly amount is amount / n (n = calendar months of
-- its period, at least 1), in micro-units. It counts in month M when M's
-- snapshot day (the last day, or as_of in as_of's month) lies in
-- [period_start, period_end): each line is expanded to the few months its
-- period touches, rather than range-joined with every month.
--
-- customer_mrr_movements: every customer-month where this or the previous
-- month's mrr is set, with both. One grouping gives both: at a generated
-- month M a line adds to mrr when M's snapshot is in its period and to prev
-- when M-1's is (M-1's snapshot, its last day, is in [period_start,
-- period_end) <=> period_start < M <= period_end). A line is in no snapshot
-- after month_of(period_end) but as_of's, so the months it touches cover
-- the months after its last one too. (One grouping instead of the
-- snapshots grouped by customer-month and fully joined with themselves
-- shifted by a month.) Values closer than 0.005 (5000 micro-units) are
-- equal; the first match wins. History before run.from is kept: it feeds
-- prev and "no earlier month with mrr > 0". Its mrr_micros are the MRR
-- snapshots value and health read.
CREATE OR REPLACE TEMP TABLE customer_mrr_movements AS
WITH lines AS (
    SELECT customer_key, period_start, period_end,
           CAST(round(amount * 1e6 / greatest(1,
               (year(period_end) * 12 + month(period_end))
             - (year(period_start) * 12 + month(period_start)))) AS BIGINT) AS monthly_micros
    FROM orders
    WHERE kind IN ('subscription', 'addon')
), line_months AS (
    SELECT customer_key, period_start, period_end, monthly_micros,
           CAST(unnest(generate_series(month_of(period_start),
                                       least(month_of(period_end), getvariable('as_of_month')),
                                       INTERVAL 1 MONTH)) AS DATE) AS month
    FROM lines
), flagged AS (
    SELECT customer_key, month, monthly_micros,
           period_start <= snapshot_day AND period_end > snapshot_day AS in_month,
           period_start < month AND period_end >= month AS in_prev
    FROM (
        SELECT *,
               CASE WHEN month = getvariable('as_of_month') THEN getvariable('as_of')
                    ELSE last_day(month) END AS snapshot_day
        FROM line_months
    )
), pairs AS (
    SELECT customer_key, month,
           coalesce(sum(monthly_micros) FILTER (in_month), 0) AS mrr_micros,
           coalesce(sum(monthly_micros) FILTER (in_prev), 0) AS prev_micros
    FROM flagged
    WHERE in_month OR in_prev
    GROUP BY customer_key, month
), classified AS (
    SELECT *,
           min(month) FILTER (mrr_micros >= 5000) OVER (PARTITION BY customer_key) AS first_paid_month
    FROM pairs
)
SELECT c.month, c.customer_key, s.customer_id, coalesce(s.segment, 'unknown') AS segment,
       c.mrr_micros, c.prev_micros,
       CASE
           WHEN abs(c.prev_micros) < 5000 AND c.mrr_micros >= 5000
                AND c.month = c.first_paid_month THEN 'new'
           WHEN c.prev_micros >= 5000 AND abs(c.mrr_micros) < 5000 THEN 'churn'
           WHEN abs(c.prev_micros) < 5000 AND c.mrr_micros >= 5000 THEN 'reactivation'
           WHEN c.mrr_micros - c.prev_micros >= 5000 THEN 'expansion'
           WHEN c.prev_micros - c.mrr_micros >= 5000 THEN 'contraction'
           ELSE 'flat'
       END AS movement
FROM classified c
LEFT JOIN customer_segments s ON s.customer_key = c.customer_key;

-- Output: reported months, customer-months with mrr or prev_mrr > 0.
CREATE OR REPLACE TEMP VIEW mrr_movements AS
SELECT month, customer_id, segment,
       money(mrr_micros) AS mrr,
       money(prev_micros) AS prev_mrr,
       movement,
       money(mrr_micros - prev_micros) AS delta
FROM customer_mrr_movements
WHERE month >= getvariable('first_month')
  AND (mrr_micros >= 5000 OR prev_micros >= 5000);

CREATE OR REPLACE TEMP TABLE mrr_monthly AS
WITH totals AS (
    SELECT month,
           CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           sum(mrr_micros) AS mrr,
           sum(prev_micros) AS prev_mrr,
           count(*) FILTER (mrr_micros >= 5000) AS paying_customers,
           coalesce(sum(mrr_micros) FILTER (movement = 'new'), 0) AS new_mrr,
           coalesce(sum(mrr_micros - prev_micros) FILTER (movement = 'expansion'), 0) AS expansion_mrr,
           coalesce(sum(mrr_micros) FILTER (movement = 'reactivation'), 0) AS reactivation_mrr,
           coalesce(sum(mrr_micros - prev_micros) FILTER (movement = 'contraction'), 0) AS contraction_mrr,
           coalesce(sum(-prev_micros) FILTER (movement = 'churn'), 0) AS churned_mrr
    FROM customer_mrr_movements
    WHERE month >= getvariable('first_month')
    GROUP BY GROUPING SETS ((month, segment), (month))
), t AS (
    SELECT g.month, g.segment,
           coalesce(t.mrr, 0) AS mrr, coalesce(t.prev_mrr, 0) AS prev_mrr,
           coalesce(t.paying_customers, 0) AS paying_customers,
           coalesce(t.new_mrr, 0) AS new_mrr, coalesce(t.expansion_mrr, 0) AS expansion_mrr,
           coalesce(t.reactivation_mrr, 0) AS reactivation_mrr,
           coalesce(t.contraction_mrr, 0) AS contraction_mrr,
           coalesce(t.churned_mrr, 0) AS churned_mrr
    FROM month_segments g
    LEFT JOIN totals t ON t.month = g.month AND t.segment = g.segment
)
SELECT month, segment,
       money(mrr) AS mrr,
       paying_customers,
       money(mrr) / nullif(paying_customers, 0) AS arpa,
       money(new_mrr) AS new_mrr,
       money(expansion_mrr) AS expansion_mrr,
       money(reactivation_mrr) AS reactivation_mrr,
       money(contraction_mrr) AS contraction_mrr,
       money(churned_mrr) AS churned_mrr,
       money(new_mrr + expansion_mrr + reactivation_mrr + contraction_mrr + churned_mrr) AS net_new_mrr,
       -- P = the segment's mrr of the month before
       CASE WHEN prev_mrr > 0
            THEN pct(prev_mrr + expansion_mrr + contraction_mrr + churned_mrr, prev_mrr) END AS nrr,
       CASE WHEN prev_mrr > 0
            THEN pct(prev_mrr + contraction_mrr + churned_mrr, prev_mrr) END AS grr,
       CASE WHEN contraction_mrr + churned_mrr < 0
            THEN ratio(new_mrr + reactivation_mrr + expansion_mrr, -(contraction_mrr + churned_mrr)) END
           AS quick_ratio
FROM t;

-- @step cohorts

-- Spec 4.10: each cohort (signup month from the first reported month to the
-- last complete one, a month whose last day is <= as_of), each segment and
-- each complete month since signup: the cohort's customers, those active at
-- the month's end (churn_date null or after its last day) and the cohort's
-- MRR snapshot. Customers are counted per cohort, segment and churn month
-- first (a few rows per cohort), then spread over the triangle.
CREATE OR REPLACE TEMP TABLE cohort_members AS
SELECT c.customer_key, month_of(c.signup_date) AS cohort_month,
       coalesce(s.segment, 'unknown') AS segment, month_of(c.churn_date) AS churn_month
FROM customers c
LEFT JOIN customer_segments s USING (customer_key)
WHERE c.signup_date >= getvariable('first_month')
  AND month_of(c.signup_date) <= getvariable('last_complete_month');

CREATE OR REPLACE TEMP TABLE cohort_retention AS
WITH months AS (
    SELECT month FROM kpi_months WHERE month <= getvariable('last_complete_month')
), grid AS (
    SELECT c.month AS cohort_month, s.segment, m.month
    FROM months c JOIN months m ON m.month >= c.month CROSS JOIN report_segments s
), churn_counts AS (
    SELECT cohort_month, coalesce(segment, 'all') AS segment, churn_month, count(*) AS customers
    FROM cohort_members
    GROUP BY GROUPING SETS ((cohort_month, segment, churn_month), (cohort_month, churn_month))
), counts AS (
    SELECT g.cohort_month, g.segment, g.month,
           coalesce(sum(z.customers), 0) AS cohort_customers,
           coalesce(sum(z.customers) FILTER (z.churn_month IS NULL OR z.churn_month > g.month), 0)
               AS active_customers
    FROM grid g
    LEFT JOIN churn_counts z ON z.cohort_month = g.cohort_month AND z.segment = g.segment
    GROUP BY ALL
), mrr AS (
    SELECT x.cohort_month, coalesce(x.segment, 'all') AS segment, v.month, sum(v.mrr_micros) AS micros
    FROM cohort_members x
    JOIN customer_mrr_movements v USING (customer_key)
    WHERE v.month >= x.cohort_month AND v.month <= getvariable('last_complete_month')
    GROUP BY GROUPING SETS ((x.cohort_month, x.segment, v.month), (x.cohort_month, v.month))
), joined AS (
    SELECT c.*, coalesce(r.micros, 0) AS micros,
           first(coalesce(r.micros, 0) ORDER BY c.month) OVER (PARTITION BY c.cohort_month, c.segment)
               AS base_micros
    FROM counts c
    LEFT JOIN mrr r USING (cohort_month, segment, month)
)
SELECT cohort_month, segment,
       CAST((year(month) - year(cohort_month)) * 12 + month(month) - month(cohort_month) AS BIGINT)
           AS months_since,
       CAST(cohort_customers AS BIGINT) AS cohort_customers,
       CAST(active_customers AS BIGINT) AS active_customers,
       ratio(active_customers, cohort_customers) AS logo_retention,
       money(micros) AS mrr,
       ratio(micros, base_micros) AS mrr_retention
FROM joined;

-- @step support

-- Spec 4.4, by the month of opened_at. `tickets` already reads a resolution
-- after the as_of day as null and a null `reopened` as false.
CREATE OR REPLACE TEMP TABLE support_monthly AS
WITH counted AS (
    SELECT month,
           CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           count(*) AS tickets,
           count(resolved_at) AS resolved,
           count(*) FILTER (resolved_at IS NOT NULL AND contacts = 1 AND NOT reopened)
               AS first_contact_resolved,
           -- quantile_cont: an even count gives the mean of the two middle values
           median(epoch(resolved_at - opened_at) / 3600) AS median_resolution_hours
    FROM (
        SELECT month_of(t.opened_at) AS month, coalesce(s.segment, 'unknown') AS segment,
               t.opened_at, t.resolved_at, t.contacts, t.reopened
        FROM tickets t
        LEFT JOIN customer_segments s ON s.customer_key = t.customer_key
    )
    GROUP BY GROUPING SETS ((month, segment), (month))
)
SELECT g.month, g.segment,
       coalesce(c.tickets, 0) AS tickets,
       coalesce(c.resolved, 0) AS resolved,
       coalesce(c.first_contact_resolved, 0) AS first_contact_resolved,
       pct(c.first_contact_resolved, c.tickets) AS fcr_rate,
       c.median_resolution_hours
FROM month_segments g
LEFT JOIN counted c ON c.month = g.month AND c.segment = g.segment;

-- @step surveys

-- Spec 4.5, by the month of responded_at. NPS counts per customer and month
-- only the latest response (ties: the greatest response_id): arg_max over
-- (responded_at, response_id) in one grouped pass.
CREATE OR REPLACE TEMP TABLE survey_monthly AS
WITH nps_latest AS (
    SELECT customer_key, month_of(responded_at) AS month,
           arg_max(score, (responded_at, response_id)) AS score
    FROM surveys
    WHERE survey = 'nps'
    GROUP BY customer_key, month_of(responded_at)
), nps AS (
    SELECT month,
           CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           count(*) FILTER (score >= 9) AS promoters,
           count(*) FILTER (score >= 7 AND score < 9) AS passives,
           count(*) FILTER (score < 7) AS detractors
    FROM (
        SELECT n.month, coalesce(s.segment, 'unknown') AS segment, n.score
        FROM nps_latest n
        LEFT JOIN customer_segments s ON s.customer_key = n.customer_key
    )
    GROUP BY GROUPING SETS ((month, segment), (month))
), csat AS (
    SELECT month,
           CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           count(*) AS csat_responses,
           count(*) FILTER (score >= getvariable('csat_positive_min')) AS csat_positive
    FROM (
        SELECT month_of(v.responded_at) AS month, coalesce(s.segment, 'unknown') AS segment, v.score
        FROM surveys v
        LEFT JOIN customer_segments s ON s.customer_key = v.customer_key
        WHERE v.survey = 'csat'
    )
    GROUP BY GROUPING SETS ((month, segment), (month))
), counts AS (
    SELECT g.month, g.segment,
           coalesce(n.promoters + n.passives + n.detractors, 0) AS nps_responses,
           coalesce(n.promoters, 0) AS promoters,
           coalesce(n.passives, 0) AS passives,
           coalesce(n.detractors, 0) AS detractors,
           coalesce(c.csat_responses, 0) AS csat_responses,
           coalesce(c.csat_positive, 0) AS csat_positive
    FROM month_segments g
    LEFT JOIN nps n ON n.month = g.month AND n.segment = g.segment
    LEFT JOIN csat c ON c.month = g.month AND c.segment = g.segment
)
SELECT month, segment, nps_responses, promoters, passives, detractors,
       pct(promoters - detractors, nps_responses) AS nps,
       -- 95% margin of error in NPS points; p, d the promoter and detractor shares
       CASE WHEN nps_responses > 0
            THEN 196 * sqrt((ratio(promoters, nps_responses) + ratio(detractors, nps_responses)
                             - power(ratio(promoters - detractors, nps_responses), 2))
                            / nps_responses) END AS nps_moe,
       csat_responses, csat_positive,
       pct(csat_positive, csat_responses) AS csat
FROM counts;

-- @step feedback

-- Spec 4.6. A comment is a submission's comment, non-empty after trimming
-- (RE2's \s is ASCII whitespace; cskpi's Rust regex trims any Unicode
-- space); a csi submission repeating one comment on each item row is one
-- comment, whose score is kept only when it has a single row (cskpi's grain).
--
-- The text analysis is done in SQL against the same word lists as cskpi
-- (src/feedback/themes.rs and sentiment.rs, loaded by the driver into
-- `feedback_phrases`). Tokenisation is an approximation of cskpi's Unicode
-- (UAX #29) word segmentation: NFC, lowercase, typographic apostrophes as
-- ', clauses split at . , ; : ! ? … ( ) " “ ” and newlines, and words as runs
-- of letters, marks and digits with inner apostrophes (don't). UAX #29 also
-- keeps e.g. "3.5", "e.g" or "a_b" as one word; this does not.
CREATE OR REPLACE TEMP MACRO normalize_text(t) AS
    replace(replace(replace(lower(nfc_normalize(t)), '’', ''''), '‘', ''''), 'ʼ', '''');
CREATE OR REPLACE TEMP MACRO clause_words(t) AS
    list_transform(regexp_split_to_array(normalize_text(t), '[.,;:!?…()"“”\n]'),
                   lambda c: regexp_extract_all(c, '[\pL\pM\pN]+(?:''[\pL\pM\pN]+)*'));

CREATE OR REPLACE TEMP TABLE comments AS
SELECT row_number() OVER () AS comment_id, *
FROM (
    SELECT response_id, customer_id, customer_key, survey,
           regexp_replace(comment, '^\s+|\s+$', '', 'g') AS comment,
           min(responded_at) AS responded_at,
           CASE WHEN count(*) = 1 THEN max(score) END AS score
    FROM surveys
    WHERE regexp_matches(comment, '\S')
    GROUP BY ALL
);

-- One row per word: its clause, its position in the clause, and the
-- clause's word list (to compare a phrase against the words from there on).
CREATE OR REPLACE TEMP TABLE comment_words AS
WITH clauses AS (
    SELECT comment_id, unnest(clauses) AS words, generate_subscripts(clauses, 1) AS clause
    FROM (SELECT comment_id, clause_words(comment) AS clauses FROM comments)
)
SELECT comment_id, clause, words, unnest(words) AS word, generate_subscripts(words, 1) AS pos
FROM clauses;

-- Theme keywords, lexicon terms and negators, tokenised like the comments.
CREATE OR REPLACE TEMP TABLE phrases AS
SELECT kind, theme, valence, words, words[1] AS first_word, len(words) AS n
FROM (SELECT *, flatten(clause_words(phrase)) AS words FROM feedback_phrases)
WHERE len(words) > 0;

-- Every phrase occurrence: whole words, consecutive, within one clause
-- (an equi-join on the first word, then the rest of the phrase compared).
CREATE OR REPLACE TEMP TABLE phrase_matches AS
SELECT w.comment_id, w.clause, w.pos, p.kind, p.theme, p.valence, p.n
FROM comment_words w
JOIN phrases p ON p.first_word = w.word
WHERE w.words[w.pos : w.pos + p.n - 1] = p.words;

-- Sentiment: the mean valence of the lexicon terms, a term negated (valence
-- times the negation factor) when a negator stands at most `negation_reach`
-- words before it in its clause; 0 without terms. cskpi scans each comment
-- left to right taking the longest term at a word and skipping its words;
-- here the longest term per word is kept and a token is dropped when an
-- earlier term's words cover it. That is the same unless a multi-word term
-- starts inside another multi-word term (then cskpi would not skip the words
-- of the inner one); no two terms of the built-in lexicon overlap so.
CREATE OR REPLACE TEMP TABLE comment_sentiment AS
WITH tokens AS (
    -- at a word, a lexicon term wins over a negator, and the longest term wins
    SELECT comment_id, clause, pos,
           arg_max(kind, (kind = 'term', n)) AS kind,
           max(n) FILTER (kind = 'term') AS term_n,
           max(n) AS any_n,
           arg_max(valence, n) FILTER (kind = 'term') AS valence
    FROM phrase_matches
    WHERE kind IN ('term', 'negator')
    GROUP BY comment_id, clause, pos
), scanned AS (
    SELECT comment_id, clause, pos, kind, valence,
           coalesce(max(pos + coalesce(term_n, any_n) - 1) OVER earlier >= pos, false) AS covered
    FROM tokens
    WINDOW earlier AS (PARTITION BY comment_id, clause ORDER BY pos
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), negated AS (
    SELECT comment_id, kind, valence,
           coalesce(max(pos) FILTER (kind = 'negator') OVER earlier
                    >= pos - getvariable('negation_reach'), false) AS negated
    FROM scanned
    WHERE NOT covered
    WINDOW earlier AS (PARTITION BY comment_id, clause ORDER BY pos
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
)
SELECT comment_id,
       avg(CASE WHEN negated THEN valence * getvariable('negation_factor') ELSE valence END)
           AS sentiment
FROM negated
WHERE kind = 'term'
GROUP BY comment_id;

CREATE OR REPLACE TEMP TABLE feedback_comments AS
WITH themes AS (
    SELECT comment_id, list(DISTINCT theme ORDER BY theme) AS themes
    FROM phrase_matches
    WHERE kind = 'theme'
    GROUP BY comment_id
)
SELECT c.response_id, c.customer_id, month_of(c.responded_at) AS month, c.survey, c.score,
       coalesce(se.sentiment, 0.0) AS sentiment,
       coalesce(t.themes, CAST([] AS VARCHAR[])) AS themes,
       coalesce(s.segment, 'unknown') AS segment,
       c.responded_at, c.comment
FROM comments c
LEFT JOIN comment_sentiment se ON se.comment_id = c.comment_id
LEFT JOIN themes t ON t.comment_id = c.comment_id
LEFT JOIN customer_segments s ON s.customer_key = c.customer_key;

-- Every reported month and theme; mentions 0 where nobody mentioned it.
CREATE OR REPLACE TEMP TABLE feedback_themes AS
WITH monthly AS (
    SELECT month, count(*) AS comments FROM feedback_comments GROUP BY month
), by_theme AS (
    SELECT month, theme,
           count(*) AS mentions,
           avg(sentiment) AS avg_sentiment,
           avg(score) FILTER (survey = 'nps') AS avg_nps_score
    FROM (SELECT month, survey, score, sentiment, unnest(themes) AS theme FROM feedback_comments)
    GROUP BY month, theme
), themes AS (
    SELECT DISTINCT theme FROM feedback_phrases WHERE kind = 'theme'
)
SELECT m.month, t.theme,
       coalesce(c.comments, 0) AS comments,
       coalesce(b.mentions, 0) AS mentions,
       pct(coalesce(b.mentions, 0), c.comments) AS share,
       b.avg_sentiment,
       b.avg_nps_score
FROM kpi_months m
CROSS JOIN themes t
LEFT JOIN monthly c ON c.month = m.month
LEFT JOIN by_theme b ON b.month = m.month AND b.theme = t.theme;

-- @step csi

-- Spec 4.7: the csi answers of the run's months, for the configured items;
-- the driver pivots them to one row per respondent, joins the respondents'
-- segments and estimates in numpy. A view: the pivot reads it once.
CREATE OR REPLACE TEMP VIEW csi_answers AS
SELECT response_id, customer_key, item, score
FROM surveys
WHERE survey = 'csi'
  AND responded_at >= CAST(getvariable('first_month') AS TIMESTAMP)
  AND list_contains(getvariable('csi_items'), item);

-- @step value

-- Spec 4.8. W = the 12 months ending with as_of's month (`trailing_months`,
-- from trailing_first_month). Money in micro-units, as for MRR.
CREATE OR REPLACE TEMP TABLE cost_lines AS
SELECT c.month, c.category, c.customer_id, c.customer_key, coalesce(s.segment, 'unknown') AS segment,
       CAST(round(c.amount * 1e6) AS BIGINT) AS amount_micros
FROM costs c
LEFT JOIN customer_segments s ON s.customer_key = c.customer_key;

-- CRC: the month's retention costs (direct ones of the segment's customers
-- + overhead ones * CE_segment / CE_all) per customer at the month's end.
CREATE OR REPLACE TEMP TABLE value_monthly AS
WITH direct AS (
    SELECT month,
           CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           sum(amount_micros) AS micros
    FROM cost_lines
    WHERE category = 'retention' AND customer_id IS NOT NULL
    GROUP BY GROUPING SETS ((month, segment), (month))
), overhead AS (
    SELECT month, sum(amount_micros) AS micros
    FROM cost_lines
    WHERE category = 'retention' AND customer_id IS NULL
    GROUP BY month
), costs AS (
    SELECT r.month, r.segment, r.customers_end,
           money(coalesce(d.micros, 0))
           + money(coalesce(o.micros, 0))
             * CASE WHEN r.segment = 'all' THEN 1.0
                    WHEN a.customers_end > 0 THEN CAST(r.customers_end AS DOUBLE) / a.customers_end
                    ELSE 0.0 END AS retention_cost
    FROM retention_monthly r
    JOIN retention_monthly a ON a.month = r.month AND a.segment = 'all'
    LEFT JOIN direct d ON d.month = r.month AND d.segment = r.segment
    LEFT JOIN overhead o ON o.month = r.month
)
SELECT c.month, c.segment, c.retention_cost,
       ratio(c.retention_cost, c.customers_end) AS crc,
       m.arpa,
       CASE WHEN m.arpa > 0 THEN ratio(c.retention_cost, c.customers_end) / m.arpa END AS crc_to_arpa
FROM costs c
JOIN mrr_monthly m ON m.month = c.month AND m.segment = c.segment;

-- Order lines booked in W (refunds included), per customer: revenue, and
-- the purchases (subscription, addon and one_time lines with a positive
-- amount) for value_summary. Grouped per customer first, so that segments
-- are joined to customers rather than to every order line.
CREATE OR REPLACE TEMP TABLE trailing_orders AS
SELECT customer_key,
       sum(amount_micros) AS revenue_micros,
       count(*) FILTER (purchase) AS purchases,
       coalesce(sum(amount_micros) FILTER (purchase), 0) AS purchase_micros
FROM (
    SELECT customer_key, amount_micros,
           kind IN ('subscription', 'addon', 'one_time') AND amount_micros > 0 AS purchase
    FROM (
        SELECT customer_key, kind, CAST(round(amount * 1e6) AS BIGINT) AS amount_micros
        FROM orders
        WHERE order_date >= getvariable('trailing_first_month')
    )
)
GROUP BY customer_key;

-- Each month's overhead service costs split across customers in proportion
-- to their tickets opened that month (a month without tickets: equally over
-- the customers active at its end, at as_of in as_of's month), in whole
-- micro-units: everyone gets the floor of their share and the leftover
-- micro-units go one each to the largest remainders (ties by customer_id,
-- i.e. by customer_key),
-- so a month's shares add up to its overhead exactly (cskpi's convention).
CREATE OR REPLACE TEMP TABLE overhead_allocation AS
WITH overhead AS (
    SELECT month, sum(amount_micros) AS micros
    FROM cost_lines
    WHERE category = 'service' AND customer_id IS NULL
      AND month >= getvariable('trailing_first_month')
    GROUP BY month
), ticket_weights AS (
    SELECT month_of(opened_at) AS month, customer_key, count(*) AS weight
    FROM tickets
    WHERE opened_at >= CAST(getvariable('trailing_first_month') AS TIMESTAMP)
    GROUP BY ALL
), weights AS (
    SELECT t.month, t.customer_key, t.weight
    FROM ticket_weights t
    SEMI JOIN overhead o ON o.month = t.month
    UNION ALL
    SELECT m.month, c.customer_key, 1 AS weight
    FROM (
        SELECT month, least(last_day(month), getvariable('as_of')) AS month_end
        FROM overhead
        ANTI JOIN (SELECT DISTINCT month FROM ticket_weights) USING (month)
    ) m
    JOIN customers c
      ON c.signup_date <= m.month_end AND (c.churn_date IS NULL OR c.churn_date > m.month_end)
), based AS (
    SELECT w.month, w.customer_key, o.micros AS overhead,
           o.micros * w.weight // sum(w.weight) OVER (PARTITION BY w.month) AS base,
           o.micros * w.weight
             - o.micros * w.weight // sum(w.weight) OVER (PARTITION BY w.month)
               * sum(w.weight) OVER (PARTITION BY w.month) AS remainder
    FROM weights w
    JOIN overhead o ON o.month = w.month
), ranked AS (
    SELECT month, customer_key, base,
           overhead - sum(base) OVER (PARTITION BY month) AS leftover,
           row_number() OVER (PARTITION BY month ORDER BY abs(remainder) DESC, customer_key)
               AS remainder_rank
    FROM based
)
SELECT month, customer_key,
       base + CASE WHEN remainder_rank <= abs(leftover) THEN sign(leftover) ELSE 0 END
           AS allocated_micros
FROM ranked;

-- Lifetime per segment: 1 / the mean monthly churn over W's months with
-- customers at the start, capped (also when churn is 0); null without such
-- months.
CREATE OR REPLACE TEMP TABLE segment_lifetimes AS
WITH mean AS (
    SELECT c.segment, avg(CAST(c.customers_churned AS DOUBLE) / c.customers_start) AS mean_churn
    FROM customer_counts_monthly c
    SEMI JOIN trailing_months t ON t.month = c.month
    WHERE c.customers_start > 0
    GROUP BY c.segment
)
SELECT s.segment, m.mean_churn,
       CASE WHEN m.mean_churn IS NULL THEN NULL
            WHEN m.mean_churn = 0 THEN getvariable('max_lifetime_months')
            ELSE least(getvariable('max_lifetime_months'), 1.0 / m.mean_churn) END
           AS lifetime_months
FROM report_segments s
LEFT JOIN mean m ON m.segment = s.segment;

-- Per customer with revenue, direct cost or allocated cost in W.
CREATE OR REPLACE TEMP TABLE customer_value_micros AS
WITH revenue AS (
    SELECT customer_key, revenue_micros AS micros FROM trailing_orders
), direct AS (
    SELECT customer_key, sum(amount_micros) AS micros
    FROM cost_lines
    WHERE customer_id IS NOT NULL AND month >= getvariable('trailing_first_month')
    GROUP BY customer_key
), allocated AS (
    SELECT customer_key, sum(allocated_micros) AS micros
    FROM overhead_allocation GROUP BY customer_key
), paying AS (
    -- the MRR snapshots of W's months with mrr > 0
    SELECT customer_key, sum(mrr_micros) AS mrr_micros, count(*) AS months
    FROM customer_mrr_movements
    WHERE month >= getvariable('trailing_first_month') AND mrr_micros > 0
    GROUP BY customer_key
), current_mrr AS (
    SELECT customer_key, mrr_micros
    FROM customer_mrr_movements
    WHERE month = getvariable('as_of_month')
), tenure AS (
    -- 4.11's m for the customers active at as_of: their signup month and
    -- every later month whose last day is <= as_of
    SELECT customer_key,
           greatest(0, (year(getvariable('last_complete_month')) - year(signup_date)) * 12
                       + month(getvariable('last_complete_month')) - month(signup_date) + 1)
               AS tenure_months
    FROM customers
    WHERE signup_date <= getvariable('as_of')
      AND (churn_date IS NULL OR churn_date > getvariable('as_of'))
)
SELECT customer_key, s.customer_id, coalesce(s.segment, 'unknown') AS segment,
       coalesce(r.micros, 0) AS revenue_micros,
       coalesce(d.micros, 0) AS direct_micros,
       coalesce(a.micros, 0) AS allocated_micros,
       coalesce(r.micros, 0) - coalesce(d.micros, 0) - coalesce(a.micros, 0) AS cps_micros,
       coalesce(money(p.mrr_micros) / p.months, 0.0) AS mean_mrr,
       CAST(t.tenure_months AS BIGINT) AS tenure_months,
       money(coalesce(m.mrr_micros, 0)) AS current_mrr
FROM revenue r
FULL JOIN direct d USING (customer_key)
FULL JOIN allocated a USING (customer_key)
LEFT JOIN paying p USING (customer_key)
LEFT JOIN current_mrr m USING (customer_key)
LEFT JOIN tenure t USING (customer_key)
LEFT JOIN customer_segments s USING (customer_key);

CREATE OR REPLACE TEMP TABLE customer_value AS
SELECT getvariable('as_of') AS as_of, v.customer_id, v.segment,
       money(v.revenue_micros) AS revenue,
       money(v.direct_micros) AS direct_cost,
       money(v.allocated_micros) AS allocated_cost,
       money(v.cps_micros) AS cps,
       ntile(5) OVER (ORDER BY v.cps_micros DESC, v.customer_key) AS cps_quintile,
       v.mean_mrr * getvariable('gross_margin') * l.lifetime_months AS clv,
       v.tenure_months,
       d.derl_months,
       v.current_mrr * getvariable('gross_margin') * d.derl_months AS predicted_clv
FROM customer_value_micros v
LEFT JOIN segment_lifetimes l ON l.segment = v.segment
-- retention_derl: the driver's sBG model, DERL per segment and tenure
LEFT JOIN retention_derl d ON d.segment = v.segment AND d.tenure_months = v.tenure_months;

-- CLV per segment: avg_order_value x purchase_frequency x lifetime x margin.
CREATE OR REPLACE TEMP TABLE value_summary AS
WITH purchases AS (
    -- over the purchase lines: their mean amount, and how many a purchasing
    -- customer made per month
    SELECT CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           money(sum(purchase_micros)) / sum(purchases) AS avg_order_value,
           CAST(sum(purchases) AS DOUBLE) / count(*) / 12 AS purchase_frequency
    FROM (
        SELECT coalesce(s.segment, 'unknown') AS segment, t.purchases, t.purchase_micros
        FROM trailing_orders t
        LEFT JOIN customer_segments s ON s.customer_key = t.customer_key
        WHERE t.purchases > 0
    )
    GROUP BY GROUPING SETS ((segment), ())
), customers AS (
    SELECT CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           count(*) AS customers,
           money(sum(revenue_micros)) AS revenue,
           money(sum(cps_micros)) AS cps_total
    FROM customer_value_micros
    GROUP BY GROUPING SETS ((segment), ())
)
SELECT getvariable('as_of') AS as_of, s.segment,
       p.avg_order_value, p.purchase_frequency, l.lifetime_months,
       p.avg_order_value * p.purchase_frequency * l.lifetime_months * getvariable('gross_margin') AS clv,
       coalesce(c.customers, 0) AS customers,
       coalesce(c.revenue, 0.0) AS revenue,
       coalesce(c.cps_total, 0.0) AS cps_total
FROM report_segments s
LEFT JOIN purchases p ON p.segment = s.segment
LEFT JOIN segment_lifetimes l ON l.segment = s.segment
LEFT JOIN customers c ON c.segment = s.segment;

-- @step health

-- Spec 4.9 at one date, as if as_of were that date (4.12 asks for the score
-- at as_of and health.trend_days earlier): the customers active then, each
-- window ending then, the MRR snapshots of that day and of the last day of
-- the month three months before, from the lines ordered by then. "Within N
-- days" = the dates score_date-(N-1) .. score_date. Each component is 0-100
-- or null without data.
CREATE OR REPLACE TEMP MACRO health_scores_at(score_date, mrr_base_day) AS TABLE
WITH active AS (
    SELECT c.customer_key, c.customer_id, coalesce(s.segment, 'unknown') AS segment
    FROM customers c
    LEFT JOIN customer_segments s ON s.customer_key = c.customer_key
    WHERE c.signup_date <= score_date
      AND (c.churn_date IS NULL OR c.churn_date > score_date)
), usage_windows AS (
    SELECT customer_key,
           -- coalesce: no events in a window is 0, not unknown
           coalesce(sum(events) FILTER (day >= score_date - 29), 0) AS recent,
           coalesce(sum(events) FILTER (day < score_date - 29), 0) AS earlier
    FROM usage
    WHERE day >= score_date - 119 AND day <= score_date
    GROUP BY customer_key
), latest_nps AS (
    SELECT customer_key, arg_max(score, (responded_at, response_id)) AS score
    FROM surveys
    WHERE survey = 'nps' AND CAST(responded_at AS DATE) BETWEEN score_date - 179 AND score_date
    GROUP BY customer_key
), recent_csat AS (
    SELECT customer_key, avg(score) AS mean_score
    FROM surveys
    WHERE survey = 'csat' AND CAST(responded_at AS DATE) BETWEEN score_date - 89 AND score_date
    GROUP BY customer_key
), recent_tickets AS (
    SELECT customer_key, count(*) AS tickets
    FROM tickets
    WHERE CAST(opened_at AS DATE) BETWEEN score_date - 29 AND score_date
    GROUP BY customer_key
), mrr AS (
    SELECT customer_key,
           coalesce(sum(monthly_micros) FILTER (period_start <= score_date AND score_date < period_end), 0)
               AS now_micros,
           coalesce(sum(monthly_micros) FILTER (period_start <= mrr_base_day AND mrr_base_day < period_end), 0)
               AS base_micros
    FROM (
        SELECT customer_key, period_start, period_end,
               CAST(round(amount * 1e6 / greatest(1,
                   (year(period_end) * 12 + month(period_end))
                 - (year(period_start) * 12 + month(period_start)))) AS BIGINT) AS monthly_micros
        FROM orders
        WHERE kind IN ('subscription', 'addon') AND order_date <= score_date
          AND period_start <= score_date AND period_end > mrr_base_day
    )
    GROUP BY customer_key
), components AS (
    SELECT a.customer_key, a.customer_id, a.segment,
           CASE WHEN u.earlier > 0
                THEN least(100.0, 50 * CAST(u.recent AS DOUBLE) / (CAST(u.earlier AS DOUBLE) / 3)) END
               AS usage,
           10 * n.score AS nps,
           25 * (c.mean_score - 1) AS csat,
           greatest(0.0, 100 - 20 * CAST(coalesce(t.tickets, 0) AS DOUBLE)) AS support,
           CASE WHEN m.base_micros > 0
                THEN least(100.0, 50 * CAST(m.now_micros AS DOUBLE) / m.base_micros) END AS mrr_trend
    FROM active a
    LEFT JOIN usage_windows u ON u.customer_key = a.customer_key
    LEFT JOIN latest_nps n ON n.customer_key = a.customer_key
    LEFT JOIN recent_csat c ON c.customer_key = a.customer_key
    LEFT JOIN recent_tickets t ON t.customer_key = a.customer_key
    LEFT JOIN mrr m ON m.customer_key = a.customer_key
), weighted AS (
    -- the score re-weights over the components that have data
    SELECT *,
           CASE WHEN usage IS NULL THEN 0.0 ELSE getvariable('w_usage') END
           + CASE WHEN nps IS NULL THEN 0.0 ELSE getvariable('w_nps') END
           + CASE WHEN csat IS NULL THEN 0.0 ELSE getvariable('w_csat') END
           + getvariable('w_support')
           + CASE WHEN mrr_trend IS NULL THEN 0.0 ELSE getvariable('w_mrr_trend') END AS weight_total
    FROM components
), scored AS (
    SELECT *,
           -- rounded to 1e-9 (cskpi's convention) so that float noise cannot
           -- move a score of exactly 70 below green
           CASE WHEN weight_total > 0
                THEN round((coalesce(getvariable('w_usage') * usage, 0)
                            + coalesce(getvariable('w_nps') * nps, 0)
                            + coalesce(getvariable('w_csat') * csat, 0)
                            + getvariable('w_support') * support
                            + coalesce(getvariable('w_mrr_trend') * mrr_trend, 0)) / weight_total, 9)
           END AS health_score
    FROM weighted
)
SELECT customer_key, customer_id, segment, health_score,
       CASE WHEN health_score >= getvariable('green_min') THEN 'green'
            WHEN health_score >= getvariable('yellow_min') THEN 'yellow'
            WHEN health_score IS NOT NULL THEN 'red' END AS band,
       usage, nps, csat, support, mrr_trend,
       CASE WHEN weight_total > 0 THEN getvariable('w_usage') * usage / weight_total END AS usage_contribution,
       CASE WHEN weight_total > 0 THEN getvariable('w_nps') * nps / weight_total END AS nps_contribution,
       CASE WHEN weight_total > 0 THEN getvariable('w_csat') * csat / weight_total END AS csat_contribution,
       CASE WHEN weight_total > 0 THEN getvariable('w_support') * support / weight_total END
           AS support_contribution,
       CASE WHEN weight_total > 0 THEN getvariable('w_mrr_trend') * mrr_trend / weight_total END
           AS mrr_trend_contribution
FROM scored;

CREATE OR REPLACE TEMP TABLE customer_health AS
SELECT getvariable('as_of') AS as_of, h.* EXCLUDE (customer_key),
       p.health_score AS previous_health_score,
       p.band AS previous_band,
       round(h.health_score - p.health_score, 9) AS health_change
FROM health_scores_at(getvariable('as_of'), getvariable('health_mrr_base_day')) h
LEFT JOIN health_scores_at(getvariable('health_previous_as_of'),
                           getvariable('health_previous_mrr_base_day')) p
       ON p.customer_key = h.customer_key;

-- @step summary

-- Every numeric column of the monthly tables in long form (value_monthly's
-- arpa is mrr_monthly's, listed once), null values kept.
CREATE OR REPLACE TEMP TABLE kpi_summary AS
FROM (SELECT month, segment, COLUMNS(* EXCLUDE (month, segment))::DOUBLE FROM retention_monthly)
     UNPIVOT INCLUDE NULLS (value FOR kpi IN (COLUMNS(* EXCLUDE (month, segment))))
UNION ALL BY NAME
FROM (SELECT month, segment, COLUMNS(* EXCLUDE (month, segment))::DOUBLE FROM mrr_monthly)
     UNPIVOT INCLUDE NULLS (value FOR kpi IN (COLUMNS(* EXCLUDE (month, segment))))
UNION ALL BY NAME
FROM (SELECT month, segment, COLUMNS(* EXCLUDE (month, segment))::DOUBLE FROM support_monthly)
     UNPIVOT INCLUDE NULLS (value FOR kpi IN (COLUMNS(* EXCLUDE (month, segment))))
UNION ALL BY NAME
FROM (SELECT month, segment, COLUMNS(* EXCLUDE (month, segment))::DOUBLE FROM survey_monthly)
     UNPIVOT INCLUDE NULLS (value FOR kpi IN (COLUMNS(* EXCLUDE (month, segment))))
UNION ALL BY NAME
FROM (SELECT month, segment, COLUMNS(* EXCLUDE (month, segment, arpa))::DOUBLE FROM value_monthly)
     UNPIVOT INCLUDE NULLS (value FOR kpi IN (COLUMNS(* EXCLUDE (month, segment))));
