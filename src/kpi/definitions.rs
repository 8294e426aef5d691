//! Every KPI cskpi computes, with its formula, unit, inputs and output
//! column: the one source for `cskpi kpis` and for docs/KPIS.md (generated
//! with `cskpi kpis --markdown`; a test keeps the file in step).

/// One KPI (or KPI column) of an output table.
#[derive(Debug, Clone, Copy)]
pub struct KpiDefinition {
    /// Unique name, used by `cskpi kpis NAME`.
    pub name: &'static str,
    pub title: &'static str,
    /// Section of the spec (../shared/kpi-spec.md).
    pub spec: &'static str,
    pub formula: &'static str,
    pub unit: &'static str,
    /// Input tables it is computed from.
    pub sources: &'static [&'static str],
    /// `table.column` it is published in.
    pub output: &'static str,
}

macro_rules! kpi {
    ($name:literal, $title:literal, $spec:literal, $unit:literal, [$($src:literal),*], $output:literal, $formula:literal) => {
        KpiDefinition {
            name: $name,
            title: $title,
            spec: $spec,
            formula: $formula,
            unit: $unit,
            sources: &[$($src),*],
            output: $output,
        }
    };
}

pub const DEFINITIONS: &[KpiDefinition] = &[
    // 4.1 customers
    kpi!(
        "customers_start",
        "Customers at the start of the month",
        "4.1",
        "customers",
        ["customers"],
        "retention_monthly.customers_start",
        "customers with signup_date before the month and no churn_date before it"
    ),
    kpi!(
        "customers_new",
        "New customers",
        "4.1",
        "customers",
        ["customers"],
        "retention_monthly.customers_new",
        "customers whose signup_date is in the month"
    ),
    kpi!(
        "customers_end",
        "Customers at the end of the month",
        "4.1",
        "customers",
        ["customers"],
        "retention_monthly.customers_end",
        "customers signed up by the month's end and not churned by then"
    ),
    kpi!(
        "customers_churned",
        "Churned customers",
        "4.1",
        "customers",
        ["customers"],
        "retention_monthly.customers_churned",
        "customers at the start of the month whose churn_date is in the month"
    ),
    kpi!(
        "churn_rate",
        "Churn rate",
        "4.1",
        "%",
        ["customers"],
        "retention_monthly.churn_rate",
        "100 * customers_churned / customers_start (null when customers_start = 0)"
    ),
    kpi!(
        "crr",
        "Customer retention rate",
        "4.1",
        "%",
        ["customers"],
        "retention_monthly.crr",
        "100 * (customers_end - customers_new) / customers_start"
    ),
    // 4.2 renewals
    kpi!(
        "renewals_due",
        "Renewals due",
        "4.2",
        "customers",
        ["orders"],
        "retention_monthly.renewals_due",
        "customers with a subscription line whose period_end falls in the month"
    ),
    kpi!(
        "renewals_won",
        "Renewals won",
        "4.2",
        "customers",
        ["orders"],
        "retention_monthly.renewals_won",
        "due customers with a due line followed by another subscription line starting later, in [period_end - 7 days, period_end + renewal.grace_days]"
    ),
    kpi!(
        "renewals_pending",
        "Renewals pending",
        "4.2",
        "customers",
        ["orders"],
        "retention_monthly.renewals_pending",
        "due customers, not won, whose latest due line's grace window ends after as_of"
    ),
    kpi!(
        "renewal_rate",
        "Renewal rate",
        "4.2",
        "%",
        ["orders"],
        "retention_monthly.renewal_rate",
        "100 * renewals_won / (renewals_due - renewals_pending)"
    ),
    // 4.3 MRR
    kpi!(
        "mrr",
        "Monthly recurring revenue",
        "4.3",
        "currency / month",
        ["orders"],
        "mrr_monthly.mrr",
        "sum of amount / n over subscription and add-on lines with period_start <= d < period_end, n = the period's length in calendar months (at least 1), d = the month's last day (as_of in as_of's month)"
    ),
    kpi!(
        "paying_customers",
        "Paying customers",
        "4.3",
        "customers",
        ["orders"],
        "mrr_monthly.paying_customers",
        "customers with mrr >= 0.005 in the month"
    ),
    kpi!(
        "arpa",
        "Average revenue per account",
        "4.3",
        "currency / month",
        ["orders"],
        "mrr_monthly.arpa",
        "mrr / paying_customers"
    ),
    kpi!(
        "new_mrr",
        "New MRR",
        "4.3",
        "currency / month",
        ["orders"],
        "mrr_monthly.new_mrr",
        "mrr of customers with prev_mrr = 0 and no earlier month with mrr > 0"
    ),
    kpi!(
        "expansion_mrr",
        "Expansion MRR",
        "4.3",
        "currency / month",
        ["orders"],
        "mrr_monthly.expansion_mrr",
        "sum of mrr - prev_mrr over customers whose mrr grew"
    ),
    kpi!(
        "reactivation_mrr",
        "Reactivation MRR",
        "4.3",
        "currency / month",
        ["orders"],
        "mrr_monthly.reactivation_mrr",
        "mrr of customers with prev_mrr = 0 who had mrr in an earlier month"
    ),
    kpi!(
        "contraction_mrr",
        "Contraction MRR",
        "4.3",
        "currency / month (<= 0)",
        ["orders"],
        "mrr_monthly.contraction_mrr",
        "sum of mrr - prev_mrr over customers whose mrr shrank but stayed > 0"
    ),
    kpi!(
        "churned_mrr",
        "Churned MRR",
        "4.3",
        "currency / month (<= 0)",
        ["orders"],
        "mrr_monthly.churned_mrr",
        "-prev_mrr of customers whose mrr fell to 0"
    ),
    kpi!(
        "net_new_mrr",
        "Net new MRR",
        "4.3",
        "currency / month",
        ["orders"],
        "mrr_monthly.net_new_mrr",
        "new + expansion + reactivation + contraction + churned MRR"
    ),
    kpi!(
        "nrr",
        "Net revenue retention",
        "4.3",
        "%",
        ["orders"],
        "mrr_monthly.nrr",
        "100 * (prev_mrr + expansion + contraction + churned) / prev_mrr, over the segment's previous-month MRR"
    ),
    kpi!(
        "grr",
        "Gross revenue retention",
        "4.3",
        "%",
        ["orders"],
        "mrr_monthly.grr",
        "100 * (prev_mrr + contraction + churned) / prev_mrr"
    ),
    kpi!(
        "quick_ratio",
        "SaaS quick ratio",
        "4.3",
        "ratio",
        ["orders"],
        "mrr_monthly.quick_ratio",
        "(new + reactivation + expansion) / -(contraction + churned)"
    ),
    kpi!(
        "mrr_movement",
        "MRR movement per customer",
        "4.3",
        "currency / month",
        ["orders"],
        "mrr_movements.delta",
        "mrr - prev_mrr per customer and month, with movement new, expansion, contraction, churn, reactivation or flat"
    ),
    // 4.4 support
    kpi!(
        "tickets",
        "Tickets",
        "4.4",
        "tickets",
        ["tickets"],
        "support_monthly.tickets",
        "tickets opened in the month"
    ),
    kpi!(
        "resolved",
        "Resolved tickets",
        "4.4",
        "tickets",
        ["tickets"],
        "support_monthly.resolved",
        "tickets opened in the month with resolved_at set (by the end of as_of)"
    ),
    kpi!(
        "first_contact_resolved",
        "First-contact resolutions",
        "4.4",
        "tickets",
        ["tickets"],
        "support_monthly.first_contact_resolved",
        "resolved tickets with contacts = 1 and not reopened"
    ),
    kpi!(
        "fcr_rate",
        "First contact resolution rate",
        "4.4",
        "%",
        ["tickets"],
        "support_monthly.fcr_rate",
        "100 * first_contact_resolved / tickets"
    ),
    kpi!(
        "median_resolution_hours",
        "Median resolution time",
        "4.4",
        "hours",
        ["tickets"],
        "support_monthly.median_resolution_hours",
        "median of resolved_at - opened_at over resolved tickets (even count: mean of the two middle values)"
    ),
    // 4.5 surveys
    kpi!(
        "nps_responses",
        "NPS responses",
        "4.5",
        "responses",
        ["surveys"],
        "survey_monthly.nps_responses",
        "per customer, only the latest nps response of the month (ties: greatest response_id)"
    ),
    kpi!(
        "promoters",
        "Promoters",
        "4.5",
        "responses",
        ["surveys"],
        "survey_monthly.promoters",
        "counted nps responses with score >= 9"
    ),
    kpi!(
        "passives",
        "Passives",
        "4.5",
        "responses",
        ["surveys"],
        "survey_monthly.passives",
        "counted nps responses with score 7-8"
    ),
    kpi!(
        "detractors",
        "Detractors",
        "4.5",
        "responses",
        ["surveys"],
        "survey_monthly.detractors",
        "counted nps responses with score <= 6"
    ),
    kpi!(
        "nps",
        "Net Promoter Score",
        "4.5",
        "NPS points (-100..100)",
        ["surveys"],
        "survey_monthly.nps",
        "100 * (promoters - detractors) / nps_responses; UDAF nps(score)"
    ),
    kpi!(
        "nps_moe",
        "NPS margin of error (95%)",
        "4.5",
        "NPS points",
        ["surveys"],
        "survey_monthly.nps_moe",
        "196 * sqrt((p + d - (p - d)^2) / nps_responses), p and d the promoter and detractor shares; UDAF nps_moe(score)"
    ),
    kpi!(
        "csat_responses",
        "CSAT responses",
        "4.5",
        "responses",
        ["surveys"],
        "survey_monthly.csat_responses",
        "every csat response of the month"
    ),
    kpi!(
        "csat_positive",
        "Positive CSAT responses",
        "4.5",
        "responses",
        ["surveys"],
        "survey_monthly.csat_positive",
        "csat responses with score >= csat.positive_min (default 4)"
    ),
    kpi!(
        "csat",
        "Customer satisfaction score",
        "4.5",
        "%",
        ["surveys"],
        "survey_monthly.csat",
        "100 * csat_positive / csat_responses; UDAF csat(score[, positive_min])"
    ),
    // 4.6 feedback
    kpi!(
        "comments",
        "Comments",
        "4.6",
        "comments",
        ["surveys"],
        "feedback_themes.comments",
        "survey comments of the month, non-empty after trimming"
    ),
    kpi!(
        "mentions",
        "Theme mentions",
        "4.6",
        "comments",
        ["surveys"],
        "feedback_themes.mentions",
        "comments matching any keyword of the theme as whole words or a phrase (NFC, lowercase)"
    ),
    kpi!(
        "share",
        "Theme share",
        "4.6",
        "%",
        ["surveys"],
        "feedback_themes.share",
        "100 * mentions / comments"
    ),
    kpi!(
        "avg_sentiment",
        "Average sentiment of a theme",
        "4.6",
        "-1..1",
        ["surveys"],
        "feedback_themes.avg_sentiment",
        "mean sentiment of the comments mentioning the theme"
    ),
    kpi!(
        "avg_nps_score",
        "Average NPS score of a theme",
        "4.6",
        "score 0-10",
        ["surveys"],
        "feedback_themes.avg_nps_score",
        "mean score of the nps responses whose comment mentions the theme"
    ),
    kpi!(
        "sentiment",
        "Comment sentiment",
        "4.6",
        "-1..1",
        ["surveys"],
        "feedback_comments.sentiment",
        "mean valence of the English and Vietnamese lexicon terms of the comment, a negated term counting -0.75 times; UDF comment_sentiment(text)"
    ),
    // 4.7 CSI
    kpi!(
        "csi",
        "Customer satisfaction index",
        "4.7",
        "0-100",
        ["surveys"],
        "csi_index.csi",
        "the score of csi.index_factor"
    ),
    kpi!(
        "csi_factor_score",
        "CSI factor score",
        "4.7",
        "0-100",
        ["surveys"],
        "csi_factors.score",
        "(sum_i w_i * mean_i / sum_i w_i - scale_min) / (scale_max - scale_min) * 100 over the factor's items, w the PLS (or configured) outer weights"
    ),
    kpi!(
        "csi_r_squared",
        "R² of a CSI factor",
        "4.7",
        "0-1",
        ["surveys"],
        "csi_factors.r_squared",
        "share of the factor score's variance explained by its drivers (PLS inner model)"
    ),
    kpi!(
        "csi_path_coefficient",
        "CSI path coefficient",
        "4.7",
        "standardised coefficient",
        ["surveys"],
        "csi_paths.path_coefficient",
        "least-squares coefficient of from_factor in the regression of to_factor's score on its drivers (standardised scores)"
    ),
    // 4.8 value
    kpi!(
        "retention_cost",
        "Retention cost",
        "4.8",
        "currency",
        ["costs", "customers"],
        "value_monthly.retention_cost",
        "direct retention costs of the segment's customers + overhead retention costs * customers_end(segment) / customers_end(all)"
    ),
    kpi!(
        "crc",
        "Customer retention cost",
        "4.8",
        "currency / customer",
        ["costs", "customers"],
        "value_monthly.crc",
        "retention_cost / customers_end"
    ),
    kpi!(
        "crc_to_arpa",
        "CRC to ARPA",
        "4.8",
        "ratio",
        ["costs", "customers", "orders"],
        "value_monthly.crc_to_arpa",
        "crc / arpa (over 1: keeping a customer costs more than it pays)"
    ),
    kpi!(
        "avg_order_value",
        "Average order value",
        "4.8",
        "currency",
        ["orders"],
        "value_summary.avg_order_value",
        "mean amount of subscription, add-on and one-time lines with amount > 0 in the trailing 12 months W"
    ),
    kpi!(
        "purchase_frequency",
        "Purchase frequency",
        "4.8",
        "purchases / customer / month",
        ["orders"],
        "value_summary.purchase_frequency",
        "those lines / distinct customers with one / 12"
    ),
    kpi!(
        "lifetime_months",
        "Customer lifetime",
        "4.8",
        "months",
        ["customers"],
        "value_summary.lifetime_months",
        "1 / mean(churn_rate / 100) over W's months with customers at the start, capped at value.max_lifetime_months (also when churn is 0)"
    ),
    kpi!(
        "clv",
        "Customer lifetime value",
        "4.8",
        "currency",
        ["orders", "customers"],
        "value_summary.clv",
        "avg_order_value * purchase_frequency * lifetime_months * value.gross_margin"
    ),
    kpi!(
        "customer_clv",
        "Customer lifetime value of a customer",
        "4.8",
        "currency",
        ["orders", "customers"],
        "customer_value.clv",
        "mean mrr over W's months with mrr > 0 * gross_margin * the segment's lifetime_months"
    ),
    kpi!(
        "revenue",
        "Revenue",
        "4.8",
        "currency",
        ["orders"],
        "customer_value.revenue",
        "sum of the customer's order amounts in W, refunds included"
    ),
    kpi!(
        "direct_cost",
        "Direct cost",
        "4.8",
        "currency",
        ["costs"],
        "customer_value.direct_cost",
        "the customer's costs in W, all categories"
    ),
    kpi!(
        "allocated_cost",
        "Allocated overhead",
        "4.8",
        "currency",
        ["costs", "tickets", "customers"],
        "customer_value.allocated_cost",
        "each month's overhead service costs split by the customer's share of tickets opened (equally across active customers in a month without tickets)"
    ),
    kpi!(
        "cps",
        "Customer profitability score",
        "4.8",
        "currency",
        ["orders", "costs", "tickets"],
        "customer_value.cps",
        "revenue - direct_cost - allocated_cost"
    ),
    kpi!(
        "cps_quintile",
        "CPS quintile",
        "4.8",
        "1-5",
        ["orders", "costs", "tickets"],
        "customer_value.cps_quintile",
        "NTILE(5) OVER (ORDER BY cps DESC, customer_id): 1 is the most profitable fifth"
    ),
    // 4.9 health
    kpi!(
        "health_score",
        "Customer health score",
        "4.9",
        "0-100",
        ["usage", "surveys", "tickets", "orders", "customers"],
        "customer_health.health_score",
        "sum(w * component) / sum(w) over the components with data; weights [health.weights]"
    ),
    kpi!(
        "health_band",
        "Health band",
        "4.9",
        "green / yellow / red",
        ["usage", "surveys", "tickets", "orders", "customers"],
        "customer_health.band",
        "green if health_score >= health.green_min (70), yellow if >= health.yellow_min (40), else red"
    ),
    kpi!(
        "health_usage",
        "Usage component",
        "4.9",
        "0-100",
        ["usage"],
        "customer_health.usage",
        "min(100, 50 * r), r = events of the last 30 days / (events of the 90 days before / 3); null when those are 0"
    ),
    kpi!(
        "health_nps",
        "NPS component",
        "4.9",
        "0-100",
        ["surveys"],
        "customer_health.nps",
        "10 * the customer's latest nps score within 180 days"
    ),
    kpi!(
        "health_csat",
        "CSAT component",
        "4.9",
        "0-100",
        ["surveys"],
        "customer_health.csat",
        "25 * (mean csat score within 90 days - 1)"
    ),
    kpi!(
        "health_support",
        "Support component",
        "4.9",
        "0-100",
        ["tickets"],
        "customer_health.support",
        "max(0, 100 - 20 * tickets opened within 30 days)"
    ),
    kpi!(
        "health_mrr_trend",
        "MRR trend component",
        "4.9",
        "0-100",
        ["orders"],
        "customer_health.mrr_trend",
        "min(100, 50 * mrr(as_of month) / mrr(3 months earlier)); null when the latter is 0"
    ),
];

/// The definition named `name`, or whose output column is `name`
/// (`table.column`).
pub fn find(name: &str) -> Option<&'static KpiDefinition> {
    DEFINITIONS
        .iter()
        .find(|d| d.name == name)
        .or_else(|| DEFINITIONS.iter().find(|d| d.output == name))
}

/// One line per KPI: name, unit and output column.
pub fn listing() -> String {
    let width = DEFINITIONS.iter().map(|d| d.name.len()).max().unwrap_or(0);
    let out_width = DEFINITIONS
        .iter()
        .map(|d| d.output.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for d in DEFINITIONS {
        text.push_str(&format!(
            "{:<width$}  {:<out_width$}  {}\n",
            d.name, d.output, d.title
        ));
    }
    text
}

/// A KPI in full, for `cskpi kpis NAME`.
pub fn detail(d: &KpiDefinition) -> String {
    format!(
        "{name}: {title}\n  formula: {formula}\n  unit:    {unit}\n  inputs:  {sources}\n  output:  {output}\n  spec:    section {spec} of kpi-spec.md\n",
        name = d.name,
        title = d.title,
        formula = d.formula,
        unit = d.unit,
        sources = d.sources.join(", "),
        output = d.output,
        spec = d.spec,
    )
}

/// docs/KPIS.md.
pub fn markdown() -> String {
    let mut text = String::from(
        "# KPI definitions\n\n\
         Generated by `cskpi kpis --markdown` from `src/kpi/definitions.rs`, the\n\
         source `cskpi kpis` prints too; do not edit by hand. The contract is\n\
         `../shared/kpi-spec.md`; README.md lists where cskpi had to choose.\n\n\
         | KPI | name | formula | unit | inputs | output |\n|---|---|---|---|---|---|\n",
    );
    for d in DEFINITIONS {
        text.push_str(&format!(
            "| {} ({}) | `{}` | {} | {} | {} | `{}` |\n",
            d.title,
            d.spec,
            d.name,
            d.formula.replace('|', "\\|"),
            d.unit,
            d.sources.join(", "),
            d.output
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_outputs_are_unique() {
        let mut names: Vec<&str> = DEFINITIONS.iter().map(|d| d.name).collect();
        let mut outputs: Vec<&str> = DEFINITIONS.iter().map(|d| d.output).collect();
        names.sort_unstable();
        outputs.sort_unstable();
        let (n, o) = (names.len(), outputs.len());
        names.dedup();
        outputs.dedup();
        assert_eq!((names.len(), outputs.len()), (n, o));
    }

    #[test]
    fn find_takes_a_name_or_an_output_column() {
        assert_eq!(
            find("churn_rate").unwrap().output,
            "retention_monthly.churn_rate"
        );
        assert_eq!(find("customer_health.nps").unwrap().name, "health_nps");
        assert!(find("nope").is_none());
    }
}
