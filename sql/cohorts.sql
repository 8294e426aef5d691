-- Signup cohorts (spec 4.10): for each cohort month c >= run.from's month,
-- each segment ('all' and each value) and k = 0, 1, ... while month c + k
-- is complete (its last day <= as_of), the cohort's customers, those still
-- active at the end of month c + k, and the cohort's MRR snapshot then.
-- `${last_complete_month}` is the last month whose last day is <= as_of.

-- The reported months that are complete: the cohorts, and the months they
-- are followed through.
CREATE OR REPLACE VIEW cohort_months AS
SELECT month FROM kpi_months WHERE month <= ${last_complete_month};

-- Every row of the triangle, even where nothing is counted.
CREATE OR REPLACE VIEW cohort_grid AS
SELECT c.month AS cohort_month, m.month, s.segment
FROM cohort_months c
JOIN cohort_months m ON m.month >= c.month
CROSS JOIN report_segments s;

-- The visible customers of the reported cohorts, with their current
-- segment and churn_month, the month of their churn_date: a customer is
-- active at the end of month M while churn_month is null or after M (a
-- churn on a month's last day ends that month inactive; on the next day,
-- active). The clean customers view already reads a churn_date after as_of
-- as null and hides signups after as_of.
CREATE OR REPLACE VIEW cohort_members AS
SELECT c.customer_key,
       CAST(date_trunc('month', c.signup_date) AS DATE) AS cohort_month,
       COALESCE(cs.segment, 'unknown') AS segment,
       CAST(date_trunc('month', c.churn_date) AS DATE) AS churn_month
FROM customers c
LEFT JOIN customer_segments cs ON cs.customer_key = c.customer_key
WHERE c.signup_date >= ${first_month}
  AND c.signup_date < ${last_complete_month} + INTERVAL '1 month';

-- Customers per cohort, segment and churn month: a few rows per cohort,
-- however many customers it has.
CREATE OR REPLACE VIEW cohort_churn_counts AS
SELECT cohort_month,
       CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
       churn_month,
       COUNT(*) AS customers
FROM cohort_members
GROUP BY GROUPING SETS ((cohort_month, segment, churn_month), (cohort_month, churn_month));

-- The cohort's MRR snapshot (4.3) per month, in exact micro-units, summed
-- as 128-bit decimals (a 64-bit sum over many customers could wrap, see
-- mrr_segment_totals).
CREATE OR REPLACE VIEW cohort_mrr AS
SELECT m.cohort_month,
       CASE WHEN grouping(m.segment) = 1 THEN 'all' ELSE m.segment END AS segment,
       v.month,
       SUM(CAST(v.mrr_micros AS DECIMAL(38, 0))) AS mrr_micros
FROM cohort_members m
JOIN customer_mrr_movements v ON v.customer_key = m.customer_key
WHERE v.month >= m.cohort_month AND v.month <= ${last_complete_month}
GROUP BY GROUPING SETS ((m.cohort_month, m.segment, v.month), (m.cohort_month, v.month));

CREATE OR REPLACE VIEW cohort_retention AS
WITH counts AS (
    SELECT g.cohort_month, g.segment, g.month,
           COALESCE(SUM(z.customers), 0) AS cohort_customers,
           COALESCE(SUM(CASE WHEN z.churn_month IS NULL OR z.churn_month > g.month
                             THEN z.customers ELSE 0 END), 0) AS active_customers
    FROM cohort_grid g
    LEFT JOIN cohort_churn_counts z
           ON z.cohort_month = g.cohort_month AND z.segment = g.segment
    GROUP BY g.cohort_month, g.segment, g.month
), with_mrr AS (
    SELECT c.cohort_month, c.segment, c.month, c.cohort_customers, c.active_customers,
           COALESCE(r.mrr_micros, 0) AS mrr_micros
    FROM counts c
    LEFT JOIN cohort_mrr r
           ON r.cohort_month = c.cohort_month AND r.segment = c.segment AND r.month = c.month
), with_base AS (
    SELECT w.*,
           first_value(mrr_micros) OVER (PARTITION BY cohort_month, segment ORDER BY month)
               AS base_micros
    FROM with_mrr w
)
SELECT cohort_month, segment,
       CAST((date_part('year', month) - date_part('year', cohort_month)) * 12
            + date_part('month', month) - date_part('month', cohort_month) AS BIGINT)
           AS months_since,
       cohort_customers,
       active_customers,
       CASE WHEN cohort_customers > 0
            THEN CAST(active_customers AS DOUBLE) / cohort_customers END AS logo_retention,
       mrr_micros / 1000000.0 AS mrr,
       CASE WHEN base_micros > 0
            THEN CAST(mrr_micros AS DOUBLE) / base_micros END AS mrr_retention
FROM with_base;
