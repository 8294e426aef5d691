-- Validation (spec sections 2 and 3): the rows each input shows at as_of,
-- and why a row is rejected.
--
-- Duplicate keys are found by a grouped count joined back (spillable, and
-- the join's build side holds only the duplicated keys), not by a window
-- count, which would buffer whole inputs in memory. The count groups the
-- keys' 64-bit hash (`<table>_key_hashes`, `key_hash`: eight bytes a row,
-- the engine's fastest grouping); the repeated hashes, a handful, are then
-- checked on the key columns of the visible rows themselves, so neither a
-- hash collision nor an invisible copy can reject a row. Only the rows of
-- repeated hashes (a handful) look their customer up for that, not every
-- row of the input a second time. The hashes are
-- taken of every row up to as_of, without looking up its customer (rows of
-- customers who signed up after as_of are invisible): a superset of the
-- visible rows' hashes is enough to find their repeats, and the look-up of
-- every row took longer than the hashing (benches/README.md, "Measured
-- reasons"). A run finds `<table>_repeated_hashes` by grouping the hashes
-- instead (src/repeated_hashes.rs), when the memory pool can hold them. A run stores each
-- `<table>_duplicates` view (a handful of keys) before the checks read it,
-- so the planner knows it is the small side of the join.
--
-- Every `<table>_checked` view holds the visible rows of `<table>_typed` with
-- two more columns: `customer_key` (see customer_directory; NULL for an
-- unknown or missing customer_id) and `reject_reason` (NULL for a clean row). One reason per row, the first that
-- applies in the spec's order: null required column, duplicate key (among
-- visible rows; every copy), unknown kind/survey/category, unknown customer
-- (not in the customers input at all), value rules.
--
-- A run stores the checked rows of every input but customers without the
-- customer_id of a row that has a customer_key, and puts it back from the
-- directory by key (`directory_customer_id`, src/engine/sql.rs) in the
-- queries that read it: most read only the key, and writing 75 M ids of
-- usage was a fifth of storing its checked rows.
--
-- Rows of other tables whose customer signed up after as_of are invisible,
-- not rejected.
--
-- Every `<t>_keyed` view is its input with the directory's customer_key and
-- first_signup_date (NULL for an unknown or missing customer_id): a join
-- with the directory here. A local run defines it instead by the functions
-- that look each id up in the directory it holds in memory
-- (`directory_customer_key`, `directory_first_signup`;
-- src/engine/udf/customer_directory.rs): the same rows, without a join
-- whose probes took the largest part of validation's time.

-- Every customer_id in the input, visible or not, with its first signup
-- and its customer_key: the customer's rank in customer_id order, from 0.
-- The checks put the key on every row of a known customer, and the KPI
-- views join and group customers by it: integers in a dense range, which
-- the engine hashes, compares and sorts far faster than strings (a join on
-- them is an array look-up), in the order of customer_id. A check tells a
-- known customer by the directory's customer_key (never null), not its
-- customer_id: the join then copies no string out of the directory.
CREATE OR REPLACE VIEW customer_directory AS
SELECT customer_id, first_signup_date,
       CAST(ROW_NUMBER() OVER (ORDER BY customer_id) - 1 AS INT) AS customer_key
FROM (
    SELECT customer_id, MIN(signup_date) AS first_signup_date
    FROM customers_typed
    WHERE customer_id IS NOT NULL
    GROUP BY customer_id
);

CREATE OR REPLACE VIEW customers_visible AS
SELECT *
FROM customers_typed
WHERE signup_date IS NULL OR signup_date <= ${as_of};

CREATE OR REPLACE VIEW customers_key_hashes AS
SELECT key_hash(customer_id) AS h FROM customers_visible;

CREATE OR REPLACE VIEW customers_repeated_hashes AS
SELECT h FROM customers_key_hashes GROUP BY h HAVING COUNT(*) > 1;

CREATE OR REPLACE VIEW customers_duplicates AS
SELECT v.customer_id
FROM customers_repeated_hashes r
JOIN customers_visible v ON key_hash(v.customer_id) = r.h
GROUP BY v.customer_id HAVING COUNT(*) > 1;

CREATE OR REPLACE VIEW customers_checked AS
WITH counted AS (
    SELECT v.*, d.customer_id IS NOT NULL AS duplicate_key, k.customer_key
    FROM customers_visible v
    LEFT JOIN customers_duplicates d ON d.customer_id = v.customer_id
    LEFT JOIN customer_directory k ON k.customer_id = v.customer_id
)
SELECT * EXCLUDE (duplicate_key),
       CASE
           WHEN customer_id IS NULL THEN 'null in required column customer_id'
           WHEN signup_date IS NULL THEN 'null in required column signup_date'
           WHEN duplicate_key THEN 'duplicate key'
           WHEN churn_date < signup_date THEN 'churn_date < signup_date'
           -- every monthly table's total row is segment 'all' (spec 2): a
           -- customer in a segment of that name would give two rows per key
           WHEN CAST(${segment_by} AS VARCHAR) = 'all'
                THEN 'segment value ''all'' is reserved for the total'
       END AS reject_reason
FROM counted;

CREATE OR REPLACE VIEW orders_keyed AS
SELECT o.*, d.customer_key, d.first_signup_date
FROM orders_typed o
LEFT JOIN customer_directory d ON o.customer_id = d.customer_id;

CREATE OR REPLACE VIEW orders_visible AS
SELECT * EXCLUDE (first_signup_date), customer_key IS NOT NULL AS customer_known
FROM orders_keyed
WHERE (order_date IS NULL OR order_date <= ${as_of})
  AND (first_signup_date IS NULL OR first_signup_date <= ${as_of});

CREATE OR REPLACE VIEW orders_key_hashes AS
SELECT key_hash(order_id) AS h FROM orders_typed
WHERE order_date IS NULL OR order_date <= ${as_of};

CREATE OR REPLACE VIEW orders_repeated_hashes AS
SELECT h FROM orders_key_hashes GROUP BY h HAVING COUNT(*) > 1;

CREATE OR REPLACE VIEW orders_duplicates AS
WITH candidates AS (
    SELECT o.order_id, o.customer_id
    FROM orders_repeated_hashes r
    JOIN orders_typed o ON key_hash(o.order_id) = r.h
    WHERE o.order_date IS NULL OR o.order_date <= ${as_of}
)
SELECT c.order_id
FROM candidates c
LEFT JOIN customer_directory d ON c.customer_id = d.customer_id
WHERE d.first_signup_date IS NULL OR d.first_signup_date <= ${as_of}
GROUP BY c.order_id HAVING COUNT(*) > 1;

CREATE OR REPLACE VIEW orders_checked AS
WITH counted AS (
    SELECT v.*, d.order_id IS NOT NULL AS duplicate_key
    FROM orders_visible v
    LEFT JOIN orders_duplicates d ON d.order_id = v.order_id
)
SELECT * EXCLUDE (duplicate_key, customer_known),
       CASE
           WHEN order_id IS NULL THEN 'null in required column order_id'
           WHEN customer_id IS NULL THEN 'null in required column customer_id'
           WHEN order_date IS NULL THEN 'null in required column order_date'
           WHEN amount IS NULL THEN 'null in required column amount'
           WHEN kind IS NULL THEN 'null in required column kind'
           WHEN duplicate_key THEN 'duplicate key'
           WHEN kind NOT IN ('subscription', 'addon', 'one_time', 'refund') THEN 'unknown kind'
           WHEN NOT customer_known THEN 'unknown customer_id'
           WHEN kind IN ('subscription', 'addon')
                AND (period_start IS NULL OR period_end IS NULL) THEN 'missing service period'
           WHEN kind IN ('subscription', 'addon')
                AND period_end <= period_start THEN 'period_end <= period_start'
           WHEN isnan(amount) OR abs(amount) = CAST('Infinity' AS DOUBLE)
                THEN 'amount not a finite number'
           WHEN abs(amount) > 9e12 THEN 'amount out of range (|amount| > 9e12)'
       END AS reject_reason
FROM counted;

CREATE OR REPLACE VIEW tickets_keyed AS
SELECT t.*, d.customer_key, d.first_signup_date
FROM tickets_typed t
LEFT JOIN customer_directory d ON t.customer_id = d.customer_id;

CREATE OR REPLACE VIEW tickets_visible AS
SELECT * EXCLUDE (first_signup_date), customer_key IS NOT NULL AS customer_known
FROM tickets_keyed
WHERE (opened_at IS NULL OR opened_at < ${as_of_end})
  AND (first_signup_date IS NULL OR first_signup_date <= ${as_of});

CREATE OR REPLACE VIEW tickets_key_hashes AS
SELECT key_hash(ticket_id) AS h FROM tickets_typed
WHERE opened_at IS NULL OR opened_at < ${as_of_end};

CREATE OR REPLACE VIEW tickets_repeated_hashes AS
SELECT h FROM tickets_key_hashes GROUP BY h HAVING COUNT(*) > 1;

CREATE OR REPLACE VIEW tickets_duplicates AS
WITH candidates AS (
    SELECT t.ticket_id, t.customer_id
    FROM tickets_repeated_hashes r
    JOIN tickets_typed t ON key_hash(t.ticket_id) = r.h
    WHERE t.opened_at IS NULL OR t.opened_at < ${as_of_end}
)
SELECT c.ticket_id
FROM candidates c
LEFT JOIN customer_directory d ON c.customer_id = d.customer_id
WHERE d.first_signup_date IS NULL OR d.first_signup_date <= ${as_of}
GROUP BY c.ticket_id HAVING COUNT(*) > 1;

CREATE OR REPLACE VIEW tickets_checked AS
WITH counted AS (
    SELECT v.*, d.ticket_id IS NOT NULL AS duplicate_key
    FROM tickets_visible v
    LEFT JOIN tickets_duplicates d ON d.ticket_id = v.ticket_id
)
SELECT * EXCLUDE (duplicate_key, customer_known),
       CASE
           WHEN ticket_id IS NULL THEN 'null in required column ticket_id'
           WHEN customer_id IS NULL THEN 'null in required column customer_id'
           WHEN opened_at IS NULL THEN 'null in required column opened_at'
           WHEN contacts IS NULL THEN 'null in required column contacts'
           WHEN duplicate_key THEN 'duplicate key'
           WHEN NOT customer_known THEN 'unknown customer_id'
           WHEN contacts < 1 THEN 'contacts < 1'
           WHEN resolved_at < opened_at THEN 'resolved_at < opened_at'
       END AS reject_reason
FROM counted;

CREATE OR REPLACE VIEW surveys_keyed AS
SELECT s.*, d.customer_key, d.first_signup_date
FROM surveys_typed s
LEFT JOIN customer_directory d ON s.customer_id = d.customer_id;

CREATE OR REPLACE VIEW surveys_visible AS
SELECT * EXCLUDE (first_signup_date), customer_key IS NOT NULL AS customer_known
FROM surveys_keyed
WHERE (responded_at IS NULL OR responded_at < ${as_of_end})
  AND (first_signup_date IS NULL OR first_signup_date <= ${as_of});

CREATE OR REPLACE VIEW surveys_key_hashes AS
SELECT key_hash(response_id, COALESCE(item, '')) AS h FROM surveys_typed
WHERE responded_at IS NULL OR responded_at < ${as_of_end};

CREATE OR REPLACE VIEW surveys_repeated_hashes AS
SELECT h FROM surveys_key_hashes GROUP BY h HAVING COUNT(*) > 1;

CREATE OR REPLACE VIEW surveys_duplicates AS
WITH candidates AS (
    SELECT s.response_id, COALESCE(s.item, '') AS item_key, s.customer_id
    FROM surveys_repeated_hashes r
    JOIN surveys_typed s ON key_hash(s.response_id, COALESCE(s.item, '')) = r.h
    WHERE s.responded_at IS NULL OR s.responded_at < ${as_of_end}
)
SELECT c.response_id, c.item_key
FROM candidates c
LEFT JOIN customer_directory d ON c.customer_id = d.customer_id
WHERE d.first_signup_date IS NULL OR d.first_signup_date <= ${as_of}
GROUP BY c.response_id, c.item_key HAVING COUNT(*) > 1;

CREATE OR REPLACE VIEW surveys_checked AS
WITH counted AS (
    SELECT v.*, d.response_id IS NOT NULL AS duplicate_key
    FROM surveys_visible v
    LEFT JOIN surveys_duplicates d ON d.response_id = v.response_id AND d.item_key = COALESCE(v.item, '')
)
SELECT * EXCLUDE (duplicate_key, customer_known),
       CASE
           WHEN response_id IS NULL THEN 'null in required column response_id'
           WHEN customer_id IS NULL THEN 'null in required column customer_id'
           WHEN responded_at IS NULL THEN 'null in required column responded_at'
           WHEN survey IS NULL THEN 'null in required column survey'
           WHEN score IS NULL THEN 'null in required column score'
           WHEN survey = 'csi' AND item IS NULL THEN 'null in required column item'
           WHEN duplicate_key THEN 'duplicate key'
           WHEN survey NOT IN ('nps', 'csat', 'csi') THEN 'unknown survey'
           WHEN NOT customer_known THEN 'unknown customer_id'
           WHEN survey = 'nps' AND (score < 0 OR score > 10) THEN 'score out of range'
           WHEN survey = 'csat' AND (score < 1 OR score > 5) THEN 'score out of range'
           WHEN survey = 'csi' AND (score < ${csi_scale_min} OR score > ${csi_scale_max})
                THEN 'score out of range'
           WHEN survey IN ('nps', 'csat') AND score <> round(score) THEN 'score not an integer'
       END AS reject_reason
FROM counted;

CREATE OR REPLACE VIEW usage_keyed AS
SELECT u.*, d.customer_key, d.first_signup_date
FROM usage_typed u
LEFT JOIN customer_directory d ON u.customer_id = d.customer_id;

CREATE OR REPLACE VIEW usage_visible AS
SELECT * EXCLUDE (first_signup_date), customer_key IS NOT NULL AS customer_known
FROM usage_keyed
WHERE (day IS NULL OR day <= ${as_of})
  AND (first_signup_date IS NULL OR first_signup_date <= ${as_of});

CREATE OR REPLACE VIEW usage_key_hashes AS
SELECT key_hash(customer_id, day) AS h FROM usage_typed
WHERE day IS NULL OR day <= ${as_of};

CREATE OR REPLACE VIEW usage_repeated_hashes AS
SELECT h FROM usage_key_hashes GROUP BY h HAVING COUNT(*) > 1;

CREATE OR REPLACE VIEW usage_duplicates AS
WITH candidates AS (
    SELECT u.customer_id, u.day
    FROM usage_repeated_hashes r
    JOIN usage_typed u ON key_hash(u.customer_id, u.day) = r.h
    WHERE u.day IS NULL OR u.day <= ${as_of}
)
SELECT c.customer_id, c.day
FROM candidates c
LEFT JOIN customer_directory d ON c.customer_id = d.customer_id
WHERE d.first_signup_date IS NULL OR d.first_signup_date <= ${as_of}
GROUP BY c.customer_id, c.day HAVING COUNT(*) > 1;

CREATE OR REPLACE VIEW usage_checked AS
WITH counted AS (
    SELECT v.*, d.customer_id IS NOT NULL AS duplicate_key
    FROM usage_visible v
    LEFT JOIN usage_duplicates d ON d.customer_id = v.customer_id AND d.day = v.day
)
SELECT * EXCLUDE (duplicate_key, customer_known),
       CASE
           WHEN customer_id IS NULL THEN 'null in required column customer_id'
           WHEN day IS NULL THEN 'null in required column day'
           WHEN active_users IS NULL THEN 'null in required column active_users'
           WHEN events IS NULL THEN 'null in required column events'
           WHEN duplicate_key THEN 'duplicate key'
           WHEN NOT customer_known THEN 'unknown customer_id'
           WHEN active_users < 0 OR events < 0 THEN 'negative usage'
       END AS reject_reason
FROM counted;

CREATE OR REPLACE VIEW costs_keyed AS
SELECT c.*, d.customer_key, d.first_signup_date
FROM costs_typed c
LEFT JOIN customer_directory d ON c.customer_id = d.customer_id;

CREATE OR REPLACE VIEW costs_checked AS
WITH visible AS (
    SELECT * EXCLUDE (first_signup_date),
           customer_id IS NULL OR customer_key IS NOT NULL AS customer_known
    FROM costs_keyed
    WHERE (month IS NULL OR month < ${as_of_next_month})
      AND (first_signup_date IS NULL OR first_signup_date <= ${as_of})
)
SELECT * EXCLUDE (customer_known),
       CASE
           WHEN month IS NULL THEN 'null in required column month'
           WHEN category IS NULL THEN 'null in required column category'
           WHEN amount IS NULL THEN 'null in required column amount'
           WHEN category NOT IN ('acquisition', 'retention', 'service') THEN 'unknown category'
           WHEN NOT customer_known THEN 'unknown customer_id'
           WHEN isnan(amount) OR abs(amount) = CAST('Infinity' AS DOUBLE)
                THEN 'amount not a finite number'
           WHEN abs(amount) > 9e12 THEN 'amount out of range (|amount| > 9e12)'
       END AS reject_reason
FROM visible;

-- The clean rows every KPI reads (a run defines these over the stored
-- checked rows). The checked rows keep the input's values, so `rejects`
-- shows each raw row; what as_of means for dates after it is applied here:
-- a churn after as_of has not happened yet, a resolution after the as_of
-- day neither, and costs belong to a month (kept as its first day). None
-- of the reject reasons depends on these.
CREATE OR REPLACE VIEW customers AS
SELECT * EXCLUDE (churn_date, reject_reason),
       CASE WHEN churn_date <= ${as_of} THEN churn_date END AS churn_date
FROM customers_checked
WHERE reject_reason IS NULL;

CREATE OR REPLACE VIEW orders AS
SELECT * EXCLUDE (reject_reason) FROM orders_checked WHERE reject_reason IS NULL;

CREATE OR REPLACE VIEW tickets AS
SELECT * EXCLUDE (resolved_at, reopened, reject_reason),
       CASE WHEN resolved_at < ${as_of_end} THEN resolved_at END AS resolved_at,
       COALESCE(reopened, false) AS reopened
FROM tickets_checked
WHERE reject_reason IS NULL;

CREATE OR REPLACE VIEW surveys AS
SELECT * EXCLUDE (reject_reason) FROM surveys_checked WHERE reject_reason IS NULL;

-- usage_left_out (a parameter): in a run, the columns no KPI reads
-- (active_users, and any the input has beyond the contract, like a hive
-- folder's), each after a comma; the run stores them on rejected rows
-- only (src/validate.rs, `rejects_only_columns`). Empty outside a run
-- (`cskpi sql`, `cskpi validate`).
CREATE OR REPLACE VIEW usage AS
SELECT * EXCLUDE (reject_reason${usage_left_out}) FROM usage_checked WHERE reject_reason IS NULL;

CREATE OR REPLACE VIEW costs AS
SELECT * EXCLUDE (month, reject_reason),
       CAST(date_trunc('month', month) AS DATE) AS month
FROM costs_checked
WHERE reject_reason IS NULL;
