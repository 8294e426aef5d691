-- kpi_summary (spec section 5): every numeric column of the monthly KPI
-- tables in long form, one row per month, segment and KPI (the column's
-- name), null values kept. Each table is read once: its columns become an
-- array of (kpi, value) entries that is unnested. value_monthly.arpa is
-- mrr_monthly.arpa, listed once so (month, segment, kpi) stays a key.
-- tests/it/summary.rs checks that every numeric column is listed here.

CREATE OR REPLACE VIEW kpi_summary AS
WITH entries AS (
    SELECT month, segment, unnest(make_array(
        named_struct('kpi', 'customers_start', 'value', CAST(customers_start AS DOUBLE)),
        named_struct('kpi', 'customers_new', 'value', CAST(customers_new AS DOUBLE)),
        named_struct('kpi', 'customers_end', 'value', CAST(customers_end AS DOUBLE)),
        named_struct('kpi', 'customers_churned', 'value', CAST(customers_churned AS DOUBLE)),
        named_struct('kpi', 'churn_rate', 'value', CAST(churn_rate AS DOUBLE)),
        named_struct('kpi', 'crr', 'value', CAST(crr AS DOUBLE)),
        named_struct('kpi', 'renewals_due', 'value', CAST(renewals_due AS DOUBLE)),
        named_struct('kpi', 'renewals_won', 'value', CAST(renewals_won AS DOUBLE)),
        named_struct('kpi', 'renewals_pending', 'value', CAST(renewals_pending AS DOUBLE)),
        named_struct('kpi', 'renewal_rate', 'value', CAST(renewal_rate AS DOUBLE))
    )) AS entry
    FROM retention_monthly
    UNION ALL
    SELECT month, segment, unnest(make_array(
        named_struct('kpi', 'mrr', 'value', CAST(mrr AS DOUBLE)),
        named_struct('kpi', 'paying_customers', 'value', CAST(paying_customers AS DOUBLE)),
        named_struct('kpi', 'arpa', 'value', CAST(arpa AS DOUBLE)),
        named_struct('kpi', 'new_mrr', 'value', CAST(new_mrr AS DOUBLE)),
        named_struct('kpi', 'expansion_mrr', 'value', CAST(expansion_mrr AS DOUBLE)),
        named_struct('kpi', 'reactivation_mrr', 'value', CAST(reactivation_mrr AS DOUBLE)),
        named_struct('kpi', 'contraction_mrr', 'value', CAST(contraction_mrr AS DOUBLE)),
        named_struct('kpi', 'churned_mrr', 'value', CAST(churned_mrr AS DOUBLE)),
        named_struct('kpi', 'net_new_mrr', 'value', CAST(net_new_mrr AS DOUBLE)),
        named_struct('kpi', 'nrr', 'value', CAST(nrr AS DOUBLE)),
        named_struct('kpi', 'grr', 'value', CAST(grr AS DOUBLE)),
        named_struct('kpi', 'quick_ratio', 'value', CAST(quick_ratio AS DOUBLE))
    )) AS entry
    FROM mrr_monthly
    UNION ALL
    SELECT month, segment, unnest(make_array(
        named_struct('kpi', 'tickets', 'value', CAST(tickets AS DOUBLE)),
        named_struct('kpi', 'resolved', 'value', CAST(resolved AS DOUBLE)),
        named_struct('kpi', 'first_contact_resolved', 'value', CAST(first_contact_resolved AS DOUBLE)),
        named_struct('kpi', 'fcr_rate', 'value', CAST(fcr_rate AS DOUBLE)),
        named_struct('kpi', 'median_resolution_hours', 'value', CAST(median_resolution_hours AS DOUBLE))
    )) AS entry
    FROM support_monthly
    UNION ALL
    SELECT month, segment, unnest(make_array(
        named_struct('kpi', 'nps_responses', 'value', CAST(nps_responses AS DOUBLE)),
        named_struct('kpi', 'promoters', 'value', CAST(promoters AS DOUBLE)),
        named_struct('kpi', 'passives', 'value', CAST(passives AS DOUBLE)),
        named_struct('kpi', 'detractors', 'value', CAST(detractors AS DOUBLE)),
        named_struct('kpi', 'nps', 'value', CAST(nps AS DOUBLE)),
        named_struct('kpi', 'nps_moe', 'value', CAST(nps_moe AS DOUBLE)),
        named_struct('kpi', 'csat_responses', 'value', CAST(csat_responses AS DOUBLE)),
        named_struct('kpi', 'csat_positive', 'value', CAST(csat_positive AS DOUBLE)),
        named_struct('kpi', 'csat', 'value', CAST(csat AS DOUBLE))
    )) AS entry
    FROM survey_monthly
    UNION ALL
    SELECT month, segment, unnest(make_array(
        named_struct('kpi', 'retention_cost', 'value', CAST(retention_cost AS DOUBLE)),
        named_struct('kpi', 'crc', 'value', CAST(crc AS DOUBLE)),
        named_struct('kpi', 'crc_to_arpa', 'value', CAST(crc_to_arpa AS DOUBLE))
    )) AS entry
    FROM value_monthly
)
SELECT month, segment,
       CAST(entry['kpi'] AS VARCHAR) AS kpi,
       entry['value'] AS value
FROM entries;
