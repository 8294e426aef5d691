-- Reporting dimensions shared by every monthly KPI family (spec section 2).
-- `kpi_months` (one row per reported month, its first day) is registered by
-- the engine from run.from .. as_of; `trailing_months` (the 12 months
-- ending with as_of's month, the window W of spec 4.8) too.

-- Every known customer (in the customers input at all) by customer_key,
-- with its customer_id and current segment: null -> 'unknown', and
-- 'unknown' too for a customer without a clean row (a rejected or not yet
-- visible one), whose orders or tickets may still count. `listed`: the
-- customer is one of the clean customers.
CREATE OR REPLACE VIEW customer_segments AS
SELECT d.customer_key, d.customer_id,
       COALESCE(CAST(c.${segment_by} AS VARCHAR), 'unknown') AS segment,
       c.customer_key IS NOT NULL AS listed
FROM customer_directory d
LEFT JOIN customers c ON c.customer_key = d.customer_key;

-- 'all' plus every segment value of the visible customers, and 'unknown'
-- when a visible customer has no clean row (rejected, e.g. a duplicate
-- customer_id): its orders and tickets count, under 'unknown', and the
-- segments then add up to 'all'. (A customer who signs up after as_of is
-- invisible with everything it has.)
CREATE OR REPLACE VIEW report_segments AS
SELECT 'all' AS segment
UNION
SELECT DISTINCT s.segment
FROM customer_segments s
JOIN customer_directory d ON d.customer_key = s.customer_key
WHERE s.listed OR d.first_signup_date IS NULL OR d.first_signup_date <= ${as_of};

-- The grid every monthly table fills: a row per month and segment, even
-- where there is nothing to count.
CREATE OR REPLACE VIEW month_segments AS
SELECT m.month, s.segment
FROM kpi_months m CROSS JOIN report_segments s;

-- The months customer counts are needed for: the reported ones and W (the
-- lifetime of CLV uses W's churn even before run.from).
CREATE OR REPLACE VIEW count_month_segments AS
SELECT m.month, s.segment
FROM (SELECT month FROM kpi_months UNION SELECT month FROM trailing_months) m
CROSS JOIN report_segments s;
