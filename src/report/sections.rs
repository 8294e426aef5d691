//! What the report shows, section by section, read from the published
//! tables (registered under their own names) and the run's manifest.

use datafusion::prelude::SessionContext;

use super::charts::{self, Bar, Path, Series, Stack, Step};
use super::format::{self, count, money, percent, share};
use super::frame::Frame;
use super::page::{Page, Table, Tile};
use super::{ReportError, query};

/// The facts every section needs.
pub struct Context<'a> {
    pub ctx: &'a SessionContext,
    pub manifest: &'a serde_json::Value,
    /// The last month whose every day is on or before as_of (YYYY-MM-01).
    pub last_month: String,
}

fn fmt(value: Option<f64>, show: fn(f64) -> String) -> String {
    value.map(show).unwrap_or_else(|| "–".into())
}

fn month_label(month: &str) -> String {
    month.get(..7).unwrap_or(month).to_string()
}

/// The months of a monthly table (segment `all`), ascending.
fn months(frame: &Frame) -> Vec<String> {
    let mut months = Vec::new();
    for row in frame.rows_where("segment", "all") {
        months.push(frame.text(row, "month"));
    }
    months
}

/// A headline number: shown with `show`, "–" when absent.
fn tile(
    key: &'static str,
    label: impl Into<String>,
    value: Option<f64>,
    show: fn(f64) -> String,
) -> Tile {
    Tile {
        key,
        label: label.into(),
        shown: fmt(value, show),
        value,
    }
}

/// One series per segment (`all` first) of a monthly column.
fn per_segment(frame: &Frame, months: &[String], column: &str) -> Vec<Series> {
    let mut segments = frame.distinct("segment");
    segments.sort_by_key(|s| (s != "all", s.clone()));
    segments
        .into_iter()
        .map(|segment| {
            let values = months
                .iter()
                .map(|m| {
                    (0..frame.len())
                        .find(|&r| {
                            frame.text(r, "segment") == segment && &frame.text(r, "month") == m
                        })
                        .and_then(|r| frame.number(r, column))
                })
                .collect();
            Series::new(segment, values)
        })
        .collect()
}

/// A table of monthly series: month, then one column per series.
fn series_table(months: &[String], series: &[Series], show: fn(f64) -> String) -> Table {
    let mut headers = vec!["month".to_string()];
    headers.extend(series.iter().map(|s| s.name.clone()));
    let mut table = Table {
        headers,
        rows: Vec::new(),
    };
    for (i, m) in months.iter().enumerate() {
        let mut row = vec![month_label(m)];
        row.extend(series.iter().map(|s| fmt(s.values[i], show)));
        table.push(row);
    }
    table
}

fn labels(months: &[String]) -> Vec<String> {
    months.iter().map(|m| month_label(m)).collect()
}

/// The row of segment `all` in `month`, if any.
fn all_row(frame: &Frame, month: &str) -> Option<usize> {
    (0..frame.len()).find(|&r| frame.text(r, "segment") == "all" && frame.text(r, "month") == month)
}

pub async fn header(c: &Context<'_>, page: &mut Page) -> Result<(), ReportError> {
    let m = c.manifest;
    let text = |key: &str| m[key].as_str().unwrap_or("").to_string();
    page.raw(&format!(
        "<header id=\"header\"><h1>Customer-success KPIs as of <span data-kpi=\"as_of\">{}</span></h1>\
         <p>Run <code data-kpi=\"run_id\">{}</code>, started {}, finished {} (cskpi {}). Months from {}; the last complete month is {}.</p></header>",
        format::escape(&text("as_of")),
        format::escape(&text("run_id")),
        format::escape(&text("started_at")),
        format::escape(&text("finished_at")),
        format::escape(&text("tool_version")),
        format::escape(&month_label(&text("first_month"))),
        format::escape(&month_label(&c.last_month)),
    ));
    page.section(
        "inputs",
        "Inputs",
        "What did the run read, and how much of it was rejected, and why?",
    );
    let mut inputs = Table::new(&["input", "rows read", "rows rejected", "rejected"]);
    for input in m["inputs"].as_array().into_iter().flatten() {
        let read = input["rows_in"].as_f64().unwrap_or(0.0);
        let rejected = input["rows_rejected"].as_f64().unwrap_or(0.0);
        let ratio = if read > 0.0 {
            share(rejected / read)
        } else {
            "–".into()
        };
        inputs.push(vec![
            input["table"].as_str().unwrap_or("").to_string(),
            count(read),
            count(rejected),
            ratio,
        ]);
    }
    page.table("inputs-table", &inputs);
    let reasons = query(
        c.ctx,
        "SELECT input, reason, COUNT(*) AS n FROM rejects GROUP BY input, reason ORDER BY input, n DESC, reason",
    )
    .await?;
    page.heading("Rejected rows by reason");
    if reasons.is_empty() {
        page.paragraph("No row was rejected.");
    } else {
        let mut table = Table::new(&["input", "reason", "rows"]);
        for r in 0..reasons.len() {
            table.push(vec![
                reasons.text(r, "input"),
                reasons.text(r, "reason"),
                fmt(reasons.number(r, "n"), count),
            ]);
        }
        page.table("rejects-table", &table);
    }
    let segments = query(
        c.ctx,
        "SELECT DISTINCT segment FROM retention_monthly WHERE segment <> 'all' ORDER BY segment",
    )
    .await?;
    let names: Vec<String> = (0..segments.len())
        .map(|r| segments.text(r, "segment"))
        .collect();
    page.paragraph(&format!(
        "Segments: {} (and `all`, every customer).",
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    ));
    page.end_section();
    Ok(())
}

pub async fn revenue(c: &Context<'_>, page: &mut Page) -> Result<(), ReportError> {
    page.section(
        "revenue",
        "Revenue",
        "How much recurring revenue is there, where did last month's change come from, and how much of it do existing customers keep?",
    );
    let mrr = query(c.ctx, "SELECT * FROM mrr_monthly ORDER BY month, segment").await?;
    let months = months(&mrr);
    if months.is_empty() {
        page.no_data("revenue", "no subscription or add-on orders in the window");
        page.end_section();
        return Ok(());
    }
    let last = all_row(&mrr, &c.last_month);
    page.tiles(&[
        tile(
            "mrr",
            format!("MRR, {}", month_label(&c.last_month)),
            last.and_then(|r| mrr.number(r, "mrr")),
            money,
        ),
        tile(
            "nrr",
            "NRR",
            last.and_then(|r| mrr.number(r, "nrr")),
            percent,
        ),
        tile(
            "grr",
            "GRR",
            last.and_then(|r| mrr.number(r, "grr")),
            percent,
        ),
    ]);
    let series = per_segment(&mrr, &months, "mrr");
    let svg = charts::lines(
        "MRR per month",
        "month",
        "MRR (money per month)",
        &labels(&months),
        &series,
        true,
    )?;
    page.chart("mrr-chart", &svg, &series_table(&months, &series, money));

    if let Some(r) = last {
        let i = months.iter().position(|m| m == &c.last_month).unwrap_or(0);
        let start = i
            .checked_sub(1)
            .and_then(|p| all_row(&mrr, &months[p]))
            .and_then(|p| mrr.number(p, "mrr"));
        let value = |column: &str| mrr.number(r, column).unwrap_or(0.0);
        let steps = [
            ("start", start.unwrap_or(0.0), true),
            ("new", value("new_mrr"), false),
            ("expansion", value("expansion_mrr"), false),
            ("reactivation", value("reactivation_mrr"), false),
            ("contraction", value("contraction_mrr"), false),
            ("churned", value("churned_mrr"), false),
            ("end", value("mrr"), true),
        ];
        let steps: Vec<Step> = steps
            .iter()
            .map(|&(label, value, total)| Step {
                label: label.into(),
                value,
                total,
            })
            .collect();
        let title = format!("MRR bridge, {}", month_label(&c.last_month));
        let svg = charts::waterfall(&title, "MRR (money per month)", &steps)?;
        let mut table = Table::new(&["step", "MRR"]);
        for s in &steps {
            table.push(vec![s.label.clone(), money(s.value)]);
        }
        page.chart("mrr-bridge", &svg, &table);
    }
    let all = |column: &str, name: &str| {
        let values = months
            .iter()
            .map(|m| all_row(&mrr, m).and_then(|r| mrr.number(r, column)))
            .collect();
        Series::new(name, values)
    };
    let rates = [all("nrr", "NRR"), all("grr", "GRR")];
    let svg = charts::lines(
        "NRR and GRR per month (all customers)",
        "month",
        "% of last month's MRR",
        &labels(&months),
        &rates,
        false,
    )?;
    page.chart(
        "nrr-grr-chart",
        &svg,
        &series_table(&months, &rates, percent),
    );
    let quick = [all("quick_ratio", "quick ratio")];
    let svg = charts::lines(
        "Quick ratio per month (all customers)",
        "month",
        "gained / lost MRR (ratio)",
        &labels(&months),
        &quick,
        true,
    )?;
    page.chart(
        "quick-ratio-chart",
        &svg,
        &series_table(&months, &quick, |v| format::number(v, 2)),
    );
    page.end_section();
    Ok(())
}

pub async fn retention(c: &Context<'_>, page: &mut Page) -> Result<(), ReportError> {
    page.section(
        "retention",
        "Retention",
        "How many customers leave each month, how many renew, how each signup cohort holds up, and what the model expects next?",
    );
    let retention = query(
        c.ctx,
        "SELECT * FROM retention_monthly ORDER BY month, segment",
    )
    .await?;
    let months = months(&retention);
    let last = all_row(&retention, &c.last_month);
    page.tiles(&[
        tile(
            "churn_rate",
            format!("Churn rate, {}", month_label(&c.last_month)),
            last.and_then(|r| retention.number(r, "churn_rate")),
            percent,
        ),
        tile(
            "crr",
            "Customer retention rate",
            last.and_then(|r| retention.number(r, "crr")),
            percent,
        ),
    ]);
    for (column, title, id) in [
        ("churn_rate", "Churn rate per month", "churn-chart"),
        (
            "crr",
            "Customer retention rate (CRR) per month",
            "crr-chart",
        ),
    ] {
        let series = per_segment(&retention, &months, column);
        let svg = charts::lines(
            title,
            "month",
            "% of customers at the start",
            &labels(&months),
            &series,
            true,
        )?;
        page.chart(id, &svg, &series_table(&months, &series, percent));
    }
    let rows: Vec<Option<usize>> = months.iter().map(|m| all_row(&retention, m)).collect();
    let mut renewal = Series::new(
        "renewal rate",
        rows.iter()
            .map(|r| r.and_then(|r| retention.number(r, "renewal_rate")))
            .collect(),
    );
    renewal.hollow = rows
        .iter()
        .map(|r| {
            r.and_then(|r| retention.number(r, "renewals_pending"))
                .unwrap_or(0.0)
                > 0.0
        })
        .collect();
    let svg = charts::lines(
        "Renewal rate per month (all customers; hollow points are provisional)",
        "month",
        "% of renewals decided",
        &labels(&months),
        std::slice::from_ref(&renewal),
        true,
    )?;
    let mut table = Table::new(&[
        "month",
        "due",
        "won",
        "pending",
        "renewal rate",
        "provisional",
    ]);
    for (m, r) in months.iter().zip(&rows) {
        let value = |column: &str| r.and_then(|r| retention.number(r, column));
        let pending = value("renewals_pending").unwrap_or(0.0);
        table.push(vec![
            month_label(m),
            fmt(value("renewals_due"), count),
            fmt(value("renewals_won"), count),
            count(pending),
            fmt(value("renewal_rate"), percent),
            if pending > 0.0 {
                "provisional".into()
            } else {
                String::new()
            },
        ]);
    }
    page.chart("renewal-chart", &svg, &table);

    page.heading("Cohorts (all customers)");
    let cohorts = query(
        c.ctx,
        "SELECT * FROM cohort_retention WHERE segment = 'all' ORDER BY cohort_month, months_since",
    )
    .await?;
    if cohorts.is_empty() {
        page.no_data("cohorts", "no customer signed up in the window");
    } else {
        let rows = cohorts.distinct("cohort_month");
        let columns = (0..cohorts.len())
            .filter_map(|r| cohorts.number(r, "months_since"))
            .fold(0.0f64, f64::max) as usize
            + 1;
        for (column, title, id) in [
            (
                "logo_retention",
                "Logo retention by signup cohort",
                "cohort-logo",
            ),
            (
                "mrr_retention",
                "Revenue retention by signup cohort",
                "cohort-revenue",
            ),
        ] {
            let mut values = vec![vec![None; columns]; rows.len()];
            let mut table = Table::new(&["cohort", "months since signup", "customers", column]);
            for r in 0..cohorts.len() {
                let cohort = cohorts.text(r, "cohort_month");
                let y = rows.iter().position(|c| c == &cohort).unwrap_or(0);
                let x = cohorts.number(r, "months_since").unwrap_or(0.0) as usize;
                values[y][x] = cohorts.number(r, column);
                table.push(vec![
                    month_label(&cohort),
                    x.to_string(),
                    fmt(cohorts.number(r, "cohort_customers"), count),
                    fmt(cohorts.number(r, column), share),
                ]);
            }
            let row_labels: Vec<String> = rows.iter().map(|r| month_label(r)).collect();
            let svg = charts::heatmap(
                title,
                "months since signup",
                "signup cohort",
                &row_labels,
                columns,
                &values,
            )?;
            page.chart(id, &svg, &table);
        }
    }

    page.heading("Predicted survival (shifted-beta-geometric model)");
    let forecast = query(
        c.ctx,
        "SELECT segment, period, survival FROM retention_forecast WHERE survival IS NOT NULL ORDER BY segment, period",
    )
    .await?;
    if forecast.is_empty() {
        let models = query(
            c.ctx,
            "SELECT segment FROM retention_model WHERE alpha IS NOT NULL",
        )
        .await?;
        let why = match models.is_empty() {
            true => {
                "not computed: the retention model could not be fitted for any segment (the run log says why)"
            }
            false => "not computed",
        };
        page.no_data("survival", why);
    } else {
        let periods: Vec<String> = {
            let mut p: Vec<f64> = (0..forecast.len())
                .filter_map(|r| forecast.number(r, "period"))
                .collect();
            p.sort_by(f64::total_cmp);
            p.dedup();
            p.iter().map(|v| format!("{v:.0}")).collect()
        };
        let series: Vec<Series> = forecast
            .distinct("segment")
            .into_iter()
            .map(|segment| {
                let values = periods
                    .iter()
                    .map(|p| {
                        forecast
                            .rows_where("segment", &segment)
                            .into_iter()
                            .find(|&r| {
                                forecast.number(r, "period").map(|v| format!("{v:.0}"))
                                    == Some(p.clone())
                            })
                            .and_then(|r| forecast.number(r, "survival"))
                            .map(|v| v * 100.0)
                    })
                    .collect();
                Series::new(segment, values)
            })
            .collect();
        let svg = charts::lines(
            "Predicted survival per segment",
            "months ahead",
            "% of today's customers still active",
            &periods,
            &series,
            true,
        )?;
        let mut table = series_table(&periods, &series, percent);
        table.headers[0] = "months ahead".into();
        page.chart("survival-chart", &svg, &table);
    }
    page.end_section();
    Ok(())
}

pub async fn voice(c: &Context<'_>, page: &mut Page) -> Result<(), ReportError> {
    page.section(
        "voice",
        "Voice of the customer",
        "Would customers recommend us, are they satisfied, are their problems solved at first contact and how fast, and what do they write about?",
    );
    let surveys = query(
        c.ctx,
        "SELECT * FROM survey_monthly ORDER BY month, segment",
    )
    .await?;
    let months = months(&surveys);
    let responses: f64 = (0..surveys.len())
        .map(|r| {
            surveys.number(r, "nps_responses").unwrap_or(0.0)
                + surveys.number(r, "csat_responses").unwrap_or(0.0)
        })
        .sum();
    if responses == 0.0 {
        page.no_data(
            "surveys",
            "no NPS or CSAT survey responses (no surveys input, or none in the window)",
        );
    } else {
        let last = all_row(&surveys, &c.last_month);
        page.tiles(&[
            tile(
                "nps",
                format!("NPS, {}", month_label(&c.last_month)),
                last.and_then(|r| surveys.number(r, "nps")),
                |v| format::number(v, 1),
            ),
            tile(
                "csat",
                "CSAT",
                last.and_then(|r| surveys.number(r, "csat")),
                percent,
            ),
        ]);
        let rows: Vec<Option<usize>> = months.iter().map(|m| all_row(&surveys, m)).collect();
        let value = |r: &Option<usize>, column: &str| r.and_then(|r| surveys.number(r, column));
        let mut nps = Series::new("NPS", rows.iter().map(|r| value(r, "nps")).collect());
        nps.band = Some(
            rows.iter()
                .map(|r| {
                    Some((
                        value(r, "nps")? - value(r, "nps_moe")?,
                        value(r, "nps")? + value(r, "nps_moe")?,
                    ))
                })
                .collect(),
        );
        let svg = charts::lines(
            "NPS per month with its 95% margin (all customers)",
            "month",
            "NPS (-100 to 100)",
            &labels(&months),
            std::slice::from_ref(&nps),
            false,
        )?;
        let mut table = Table::new(&["month", "responses", "NPS", "95% margin"]);
        for (m, r) in months.iter().zip(&rows) {
            table.push(vec![
                month_label(m),
                fmt(value(r, "nps_responses"), count),
                fmt(value(r, "nps"), |v| format::number(v, 1)),
                fmt(value(r, "nps_moe"), |v| {
                    format!("±{}", format::number(v, 1))
                }),
            ]);
        }
        page.chart("nps-chart", &svg, &table);
        let csat = per_segment(&surveys, &months, "csat");
        let svg = charts::lines(
            "CSAT per month",
            "month",
            "% satisfied answers",
            &labels(&months),
            &csat,
            true,
        )?;
        page.chart("csat-chart", &svg, &series_table(&months, &csat, percent));
    }
    let support = query(
        c.ctx,
        "SELECT * FROM support_monthly ORDER BY month, segment",
    )
    .await?;
    let support_months = self::months(&support);
    if support_months.is_empty() {
        page.no_data("support", "no tickets in the window");
    } else {
        let fcr = per_segment(&support, &support_months, "fcr_rate");
        let svg = charts::lines(
            "First contact resolution per month",
            "month",
            "% of resolved tickets",
            &labels(&support_months),
            &fcr,
            true,
        )?;
        page.chart(
            "fcr-chart",
            &svg,
            &series_table(&support_months, &fcr, percent),
        );
        let hours = per_segment(&support, &support_months, "median_resolution_hours");
        let svg = charts::lines(
            "Median resolution time per month",
            "month",
            "hours",
            &labels(&support_months),
            &hours,
            true,
        )?;
        page.chart(
            "resolution-chart",
            &svg,
            &series_table(&support_months, &hours, |v| format::number(v, 1)),
        );
    }
    page.heading("Feedback themes, last three months");
    let themes = query(
        c.ctx,
        &format!(
            "SELECT theme, SUM(mentions) AS mentions, SUM(comments) AS comments, \
                    SUM(avg_sentiment * mentions) / NULLIF(SUM(CASE WHEN avg_sentiment IS NOT NULL THEN mentions END), 0) AS sentiment \
             FROM feedback_themes \
             WHERE month > DATE '{0}' - INTERVAL '3 months' AND month <= DATE '{0}' \
             GROUP BY theme HAVING SUM(comments) > 0 ORDER BY mentions DESC, theme",
            c.last_month
        ),
    )
    .await?;
    if themes.is_empty() {
        page.no_data("feedback", "no survey comments in the last three months");
    } else {
        let mut table = Table::new(&["theme", "mentions", "share of comments", "mean sentiment"]);
        let mut shares = Vec::new();
        let mut sentiments = Vec::new();
        for r in 0..themes.len() {
            let theme = themes.text(r, "theme");
            let mentions = themes.number(r, "mentions").unwrap_or(0.0);
            let comments = themes.number(r, "comments").unwrap_or(0.0);
            let part = if comments > 0.0 {
                mentions / comments
            } else {
                0.0
            };
            shares.push(Bar {
                label: theme.clone(),
                value: part * 100.0,
                interval: None,
            });
            let sentiment = themes.number(r, "sentiment");
            sentiments.push(Bar {
                label: theme.clone(),
                value: sentiment.unwrap_or(0.0),
                interval: None,
            });
            table.push(vec![
                theme,
                count(mentions),
                share(part),
                fmt(sentiment, |v| format::number(v, 2)),
            ]);
        }
        let svg = charts::bars(
            "Share of comments per theme, last three months",
            "theme",
            "% of comments",
            &shares,
        )?;
        page.chart("themes-share", &svg, &table);
        let svg = charts::bars(
            "Mean sentiment per theme, last three months",
            "theme",
            "sentiment (-1 to 1)",
            &sentiments,
        )?;
        page.chart("themes-sentiment", &svg, &table);
    }
    page.end_section();
    Ok(())
}

pub async fn csi(c: &Context<'_>, page: &mut Page) -> Result<(), ReportError> {
    page.section(
        "csi",
        "Customer satisfaction index",
        "How satisfied are customers on the CSI model's scale, and which factors drive satisfaction, by how much?",
    );
    let index = query(
        c.ctx,
        "SELECT * FROM csi_index WHERE period = (SELECT MAX(period) FROM csi_index) ORDER BY segment <> 'all', segment",
    )
    .await?;
    if index.is_empty() {
        page.no_data(
            "csi",
            "no CSI survey answers (no surveys input, or too few respondents)",
        );
        page.end_section();
        return Ok(());
    }
    let period = index.text(0, "period");
    let bars: Vec<Bar> = (0..index.len())
        .filter_map(|r| {
            let value = index.number(r, "csi")?;
            let interval = index
                .number(r, "csi_ci_low")
                .zip(index.number(r, "csi_ci_high"));
            Some(Bar {
                label: index.text(r, "segment"),
                value,
                interval,
            })
        })
        .collect();
    let mut table = Table::new(&["segment", "respondents", "CSI", "95% interval", "GoF"]);
    for r in 0..index.len() {
        let interval = match (
            index.number(r, "csi_ci_low"),
            index.number(r, "csi_ci_high"),
        ) {
            (Some(lo), Some(hi)) => {
                format!("{} – {}", format::number(lo, 1), format::number(hi, 1))
            }
            _ => "–".into(),
        };
        table.push(vec![
            index.text(r, "segment"),
            fmt(index.number(r, "respondents"), count),
            fmt(index.number(r, "csi"), |v| format::number(v, 1)),
            interval,
            fmt(index.number(r, "gof"), |v| format::number(v, 3)),
        ]);
    }
    let title = format!(
        "CSI per segment, {} (whiskers: 95% bootstrap interval)",
        month_label(&period)
    );
    let svg = charts::bars(&title, "segment", "CSI (0-100)", &bars)?;
    page.chart("csi-index", &svg, &table);

    let factors = query(
        c.ctx,
        &format!("SELECT factor, respondents, score, r_squared FROM csi_factors WHERE period = DATE '{period}' AND segment = 'all' ORDER BY factor"),
    )
    .await?;
    let paths = query(
        c.ctx,
        &format!("SELECT from_factor, to_factor, path_coefficient, ci_low, ci_high FROM csi_paths WHERE period = DATE '{period}' AND segment = 'all' ORDER BY from_factor, to_factor"),
    )
    .await?;
    if !factors.is_empty() {
        let names: Vec<String> = (0..factors.len())
            .map(|r| factors.text(r, "factor"))
            .collect();
        let mut arrows = Vec::new();
        let mut table = Table::new(&["from", "to", "path coefficient", "95% interval"]);
        for r in 0..paths.len() {
            let coefficient = paths.number(r, "path_coefficient");
            let interval = paths.number(r, "ci_low").zip(paths.number(r, "ci_high"));
            let mut label = fmt(coefficient, |v| format::number(v, 2));
            if let Some((lo, hi)) = interval {
                label.push_str(&format!(
                    " [{}, {}]",
                    format::number(lo, 2),
                    format::number(hi, 2)
                ));
            }
            arrows.push(Path {
                from: paths.text(r, "from_factor"),
                to: paths.text(r, "to_factor"),
                label: label.clone(),
            });
            table.push(vec![
                paths.text(r, "from_factor"),
                paths.text(r, "to_factor"),
                fmt(coefficient, |v| format::number(v, 3)),
                interval
                    .map(|(lo, hi)| {
                        format!("{} – {}", format::number(lo, 3), format::number(hi, 3))
                    })
                    .unwrap_or_else(|| "–".into()),
            ]);
        }
        let svg = charts::path_diagram(
            "The CSI model, all customers (path coefficients, 95% intervals)",
            &names,
            &arrows,
        )?;
        page.chart("csi-model", &svg, &table);
        let mut scores = Table::new(&["factor", "respondents", "score (0-100)", "R²"]);
        for r in 0..factors.len() {
            scores.push(vec![
                factors.text(r, "factor"),
                fmt(factors.number(r, "respondents"), count),
                fmt(factors.number(r, "score"), |v| format::number(v, 1)),
                fmt(factors.number(r, "r_squared"), |v| format::number(v, 3)),
            ]);
        }
        page.heading("Factor scores (all customers)");
        page.table("csi-scores", &scores);
        let weights = query(
            c.ctx,
            &format!(
                "SELECT factor, get_field(w, 'item') AS item, get_field(w, 'weight') AS weight \
                 FROM (SELECT factor, unnest(item_weights) AS w FROM csi_factors WHERE period = DATE '{period}' AND segment = 'all') \
                 ORDER BY factor, item"
            ),
        )
        .await?;
        let mut table = Table::new(&["factor", "item", "weight"]);
        for r in 0..weights.len() {
            table.push(vec![
                weights.text(r, "factor"),
                weights.text(r, "item"),
                fmt(weights.number(r, "weight"), |v| format::number(v, 3)),
            ]);
        }
        page.heading("Item weights (all customers)");
        page.table("csi-weights", &table);
    }
    page.end_section();
    Ok(())
}

const COMPONENTS: [&str; 5] = ["usage", "nps", "csat", "support", "mrr_trend"];

/// The palette's bluish green, orange and vermillion for green, yellow and
/// red: told apart with the common colour-vision deficiencies, and close
/// to the bands' names.
const BAND_COLOURS: [usize; 3] = [2, 1, 5];

pub async fn health(c: &Context<'_>, page: &mut Page) -> Result<(), ReportError> {
    page.section(
        "health",
        "Customer health",
        "How many customers are healthy, at risk or in trouble, who needs attention first, and whose health fell the most?",
    );
    let bands = query(
        c.ctx,
        "SELECT segment, SUM(CASE WHEN band = 'green' THEN 1 ELSE 0 END) AS green, \
                SUM(CASE WHEN band = 'yellow' THEN 1 ELSE 0 END) AS yellow, \
                SUM(CASE WHEN band = 'red' THEN 1 ELSE 0 END) AS red, \
                COUNT(usage) AS with_usage, COUNT(*) AS customers \
         FROM customer_health GROUP BY segment ORDER BY segment",
    )
    .await?;
    if bands.is_empty() {
        page.no_data("health", "no active customers at as_of");
        page.end_section();
        return Ok(());
    }
    let total = |column: &str| {
        (0..bands.len())
            .filter_map(|r| bands.number(r, column))
            .sum::<f64>()
    };
    page.tiles(&[
        tile(
            "green_customers",
            "Green customers",
            Some(total("green")),
            count,
        ),
        tile(
            "yellow_customers",
            "Yellow customers",
            Some(total("yellow")),
            count,
        ),
        tile("red_customers", "Red customers", Some(total("red")), count),
    ]);
    if total("with_usage") == 0.0 {
        page.no_data("usage", "no product usage (no usage input, or none in the last 120 days): the scores leave the usage component out");
    }
    let stacks: Vec<Stack> = (0..bands.len())
        .map(|r| Stack {
            label: bands.text(r, "segment"),
            parts: ["green", "yellow", "red"]
                .iter()
                .map(|b| bands.number(r, b).unwrap_or(0.0))
                .collect(),
        })
        .collect();
    let mut table = Table::new(&["segment", "green", "yellow", "red"]);
    for s in &stacks {
        let mut row = vec![s.label.clone()];
        row.extend(s.parts.iter().map(|&v| count(v)));
        table.push(row);
    }
    let svg = charts::stacked_rows(
        "Customers per health band and segment",
        "customers",
        &["green", "yellow", "red"],
        &BAND_COLOURS,
        &stacks,
    )?;
    page.chart("health-bands", &svg, &table);

    let contributions = COMPONENTS.map(|c| format!("{c}_contribution")).join(", ");
    for (order, filter, title, id) in [
        (
            "health_score ASC, customer_id",
            "TRUE",
            "The 20 lowest health scores",
            "health-lowest",
        ),
        (
            "health_change ASC, customer_id",
            "health_change < 0",
            "The 20 largest drops since the previous score",
            "health-drops",
        ),
    ] {
        let rows = query(
            c.ctx,
            &format!(
                "SELECT customer_id, segment, health_score, band, previous_health_score, health_change, {contributions} \
                 FROM customer_health WHERE {filter} ORDER BY {order} LIMIT 20"
            ),
        )
        .await?;
        page.heading(title);
        if rows.is_empty() {
            page.no_data(id, "no customer's score fell (or no previous score)");
            continue;
        }
        let stacks: Vec<Stack> = (0..rows.len())
            .map(|r| Stack {
                label: rows.text(r, "customer_id"),
                parts: COMPONENTS
                    .iter()
                    .map(|c| rows.number(r, &format!("{c}_contribution")).unwrap_or(0.0))
                    .collect(),
            })
            .collect();
        let mut headers = vec!["customer", "segment", "score", "band", "previous", "change"];
        headers.extend(COMPONENTS);
        let mut table = Table::new(&headers);
        for r in 0..rows.len() {
            let mut row = vec![
                rows.text(r, "customer_id"),
                rows.text(r, "segment"),
                fmt(rows.number(r, "health_score"), |v| format::number(v, 1)),
                rows.text(r, "band"),
                fmt(rows.number(r, "previous_health_score"), |v| {
                    format::number(v, 1)
                }),
                fmt(rows.number(r, "health_change"), |v| format::number(v, 1)),
            ];
            row.extend(COMPONENTS.iter().map(|c| {
                fmt(rows.number(r, &format!("{c}_contribution")), |v| {
                    format::number(v, 1)
                })
            }));
            table.push(row);
        }
        let svg = charts::stacked_rows(
            &format!("{title}: points per component"),
            "health score points",
            &COMPONENTS,
            &[0, 1, 4, 3, 7],
            &stacks,
        )?;
        page.chart(id, &svg, &table);
    }
    page.end_section();
    Ok(())
}

pub async fn value(c: &Context<'_>, page: &mut Page) -> Result<(), ReportError> {
    page.section(
        "value",
        "Customer value",
        "What is a customer worth over their lifetime, which customers are profitable, and what does keeping them cost?",
    );
    let summary = query(
        c.ctx,
        "SELECT segment, clv, customers FROM value_summary ORDER BY segment <> 'all', segment",
    )
    .await?;
    let bars: Vec<Bar> = (0..summary.len())
        .filter_map(|r| {
            Some(Bar {
                label: summary.text(r, "segment"),
                value: summary.number(r, "clv")?,
                interval: None,
            })
        })
        .collect();
    if bars.is_empty() {
        page.no_data(
            "clv",
            "no customer lifetime value (no churned customers to estimate a lifetime from)",
        );
    } else {
        let mut table = Table::new(&["segment", "customers", "CLV"]);
        for r in 0..summary.len() {
            table.push(vec![
                summary.text(r, "segment"),
                fmt(summary.number(r, "customers"), count),
                fmt(summary.number(r, "clv"), money),
            ]);
        }
        let svg = charts::bars(
            "Customer lifetime value per segment",
            "segment",
            "CLV (money)",
            &bars,
        )?;
        page.chart("clv-chart", &svg, &table);
    }
    let quintiles = query(
        c.ctx,
        "SELECT cps_quintile, COUNT(*) AS customers, AVG(cps) AS mean_cps, SUM(cps) AS total_cps \
         FROM customer_value WHERE cps_quintile IS NOT NULL GROUP BY cps_quintile ORDER BY cps_quintile",
    )
    .await?;
    if quintiles.is_empty() {
        page.no_data("cps", "no customer profitability scores");
    } else {
        let mut table = Table::new(&["quintile", "customers", "mean CPS", "total CPS"]);
        let mut bars = Vec::new();
        for r in 0..quintiles.len() {
            let q = fmt(quintiles.number(r, "cps_quintile"), count);
            bars.push(Bar {
                label: format!("Q{q}"),
                value: quintiles.number(r, "mean_cps").unwrap_or(0.0),
                interval: None,
            });
            table.push(vec![
                format!("Q{q}"),
                fmt(quintiles.number(r, "customers"), count),
                fmt(quintiles.number(r, "mean_cps"), money),
                fmt(quintiles.number(r, "total_cps"), money),
            ]);
        }
        let svg = charts::bars(
            "Customer profitability score by quintile (mean)",
            "CPS quintile",
            "CPS (money)",
            &bars,
        )?;
        page.chart("cps-chart", &svg, &table);
    }
    let monthly = query(c.ctx, "SELECT * FROM value_monthly ORDER BY month, segment").await?;
    let months = months(&monthly);
    let has_costs = (0..monthly.len()).any(|r| monthly.number(r, "crc").is_some());
    if !has_costs {
        page.no_data(
            "crc",
            "no retention costs (no costs input, or none in the window)",
        );
    } else {
        let crc = per_segment(&monthly, &months, "crc");
        let svg = charts::lines(
            "Customer retention cost (CRC) per month",
            "month",
            "money per customer",
            &labels(&months),
            &crc,
            true,
        )?;
        page.chart("crc-chart", &svg, &series_table(&months, &crc, money));
        let ratio = per_segment(&monthly, &months, "crc_to_arpa");
        let svg = charts::lines(
            "CRC to ARPA per month",
            "month",
            "retention cost per money of revenue (ratio)",
            &labels(&months),
            &ratio,
            true,
        )?;
        page.chart(
            "crc-arpa-chart",
            &svg,
            &series_table(&months, &ratio, |v| format::number(v, 3)),
        );
    }
    page.end_section();
    Ok(())
}
