-- Support: first contact resolution and resolution time (spec 4.4), by the
-- month of opened_at. `tickets` already reads a resolution after the as_of
-- day as null and a null `reopened` as false.

CREATE OR REPLACE VIEW support_tickets AS
SELECT t.ticket_id, t.customer_id,
       CAST(date_trunc('month', t.opened_at) AS DATE) AS month,
       COALESCE(cs.segment, 'unknown') AS segment,
       t.resolved_at IS NOT NULL AS resolved,
       t.resolved_at IS NOT NULL AND t.contacts = 1 AND NOT t.reopened AS first_contact_resolved,
       -- from the nanosecond timestamps, so fractions of a second count
       CASE WHEN t.resolved_at IS NOT NULL
            THEN (CAST(t.resolved_at AS BIGINT) - CAST(t.opened_at AS BIGINT)) / 3600e9
       END AS resolution_hours
FROM tickets t
LEFT JOIN customer_segments cs ON cs.customer_key = t.customer_key;

CREATE OR REPLACE VIEW support_monthly AS
WITH counted AS (
    SELECT month, CASE WHEN grouping(segment) = 1 THEN 'all' ELSE segment END AS segment,
           COUNT(*) AS tickets,
           SUM(CASE WHEN resolved THEN 1 ELSE 0 END) AS resolved,
           SUM(CASE WHEN first_contact_resolved THEN 1 ELSE 0 END) AS first_contact_resolved,
           -- median of an even count is the mean of the two middle values
           median(resolution_hours) AS median_resolution_hours
    FROM support_tickets
    GROUP BY GROUPING SETS ((month, segment), (month))
)
SELECT g.month, g.segment,
       COALESCE(c.tickets, 0) AS tickets,
       COALESCE(c.resolved, 0) AS resolved,
       COALESCE(c.first_contact_resolved, 0) AS first_contact_resolved,
       CASE WHEN c.tickets > 0 THEN 100.0 * c.first_contact_resolved / c.tickets END AS fcr_rate,
       c.median_resolution_hours
FROM month_segments g
LEFT JOIN counted c ON c.month = g.month AND c.segment = g.segment;
