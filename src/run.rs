//! `cskpi run`: job file -> session -> inputs -> clean views -> KPI views ->
//! published tables, in that one direction.

use std::time::Instant;

use chrono::{NaiveDate, Utc};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::DataType;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::calendar::RunWindow;
use crate::catalog::{self, RegisteredInput};
use crate::config::JobConfig;
use crate::engine::log_seconds;
use crate::engine::scratch::{Scratch, ViewDir};
use crate::engine::session;
use crate::error::Error;
use crate::kpi;
use crate::output::{self, OutputTable, Recovery, Staging};
use crate::validate::{self, InputCounts};
use crate::views;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides the job file's `run.as_of`; default yesterday (UTC).
    pub as_of: Option<NaiveDate>,
    /// Show a progress spinner (only on a terminal).
    pub progress: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub as_of: NaiveDate,
    pub first_month: NaiveDate,
    pub output_path: String,
    pub inputs: Vec<InputCounts>,
    pub outputs: Vec<(String, u64)>,
    /// Wall time of each stage (inputs, validation, each KPI family with
    /// its tables, rejects, publishing) and the total, in seconds.
    pub timings: Vec<(String, f64)>,
}

/// What `cskpi validate` found: rows and rejects per input, rejects per
/// reason, and whether the run would go ahead.
pub struct ValidationReport {
    pub as_of: NaiveDate,
    pub inputs: Vec<InputCounts>,
    /// (input, reason, rows)
    pub reasons: Vec<(String, String, i64)>,
    pub max_reject_ratio: f64,
    /// The error a run would stop with (too many rejects, a csi item
    /// nobody answered, ...), if any.
    pub problem: Option<Error>,
}

/// Checks a job, writing nothing but its scratch (the checked inputs, as a
/// run stores them, removed at the end): the inputs' schemas, every row
/// (rejects by reason), the reject ratio, and the KPI views over the data
/// (including the CSI model against the answers).
pub async fn validate_job(
    job: &JobConfig,
    options: &RunOptions,
) -> Result<ValidationReport, Error> {
    let as_of = views::resolve_as_of(job, options.as_of);
    Scratch::within(job, async |scratch| {
        validate_in_scratch(job, as_of, scratch).await
    })
    .await
}

async fn validate_in_scratch(
    job: &JobConfig,
    as_of: NaiveDate,
    scratch: &Scratch,
) -> Result<ValidationReport, Error> {
    let (ctx, window) = views::open_checked_inputs(job, as_of, scratch).await?;
    let inputs = validate::count_rows(&ctx).await?;
    let batches = ctx
        .sql(
            "SELECT input, reason, COUNT(*) AS n FROM rejects GROUP BY input, reason \
             ORDER BY input, n DESC, reason",
        )
        .await?
        .collect()
        .await?;
    let mut reasons = Vec::new();
    for b in &batches {
        let input = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        let reason = datafusion::arrow::compute::cast(b.column(1), &DataType::Utf8)?;
        let n = b
            .column(2)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            reasons.push((
                input.as_string::<i32>().value(i).to_string(),
                reason.as_string::<i32>().value(i).to_string(),
                n.value(i),
            ));
        }
    }
    let problem =
        match validate::enforce_reject_ratio(&ctx, &inputs, job.run.max_reject_ratio).await {
            Err(e) => Some(e.into()),
            Ok(()) => {
                session::prefer_hash_joins(&ctx)?;
                views::register_kpi_views(&ctx, job, &window).await.err()
            }
        };
    Ok(ValidationReport {
        as_of,
        inputs,
        reasons,
        max_reject_ratio: job.run.max_reject_ratio,
        problem,
    })
}

/// The rejected rows of every input, published after the KPI tables.
pub const REJECTS: OutputTable = OutputTable {
    name: "rejects",
    order_by: "input, key, reason, raw_row",
    partition_by: None,
    sorted_per_partition: false,
};

/// The tables a run publishes, in the order they are written.
pub fn output_tables() -> Vec<OutputTable> {
    let mut tables: Vec<OutputTable> = kpi::FAMILIES
        .iter()
        .flat_map(|f| f.outputs.iter().copied())
        .collect();
    tables.push(REJECTS);
    tables
}

struct Stages {
    bar: Option<ProgressBar>,
    timings: Vec<(String, f64)>,
    current: Option<(String, Instant)>,
}

impl Stages {
    fn new(progress: bool) -> Self {
        let bar = progress.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .expect("valid template"),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Self {
            bar,
            timings: Vec::new(),
            current: None,
        }
    }

    fn start(&mut self, name: &str) {
        self.finish_current();
        tracing::info!(stage = name, "start");
        if let Some(bar) = &self.bar {
            bar.set_message(name.to_string());
        }
        self.current = Some((name.to_string(), Instant::now()));
    }

    fn finish_current(&mut self) {
        if let Some((name, started)) = self.current.take() {
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(stage = %name, elapsed_s = log_seconds(seconds), "done");
            self.timings.push((name, seconds));
        }
    }

    fn done(mut self) -> Vec<(String, f64)> {
        self.finish_current();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        tracing::info!(stage = "publishing", "start");
        self.timings
    }
}

/// Runs a job end to end and publishes its outputs.
pub async fn run_job(job: &JobConfig, options: &RunOptions) -> Result<RunReport, Error> {
    let started = Utc::now();
    let clock = Instant::now();
    let run_id = format!(
        "{}-{}",
        started.format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    // Every log line of the run carries its id (in the `run` span).
    let span = tracing::info_span!("run", %run_id);
    execute_run(job, options, run_id, started, clock)
        .instrument(span)
        .await
}

async fn execute_run(
    job: &JobConfig,
    options: &RunOptions,
    run_id: String,
    started: chrono::DateTime<Utc>,
    clock: Instant,
) -> Result<RunReport, Error> {
    let as_of = views::resolve_as_of(job, options.as_of);
    let stages = Stages::new(options.progress);
    tracing::info!(%as_of, output = %job.output.path, "run");

    // The run's scratch holds its stored views and the engine's spill
    // files: a killed run leaves one directory (and prefix on S3), which
    // the next run removes (engine/scratch.rs).
    Scratch::within(job, async |scratch| {
        run_in_scratch(
            &scratch.spilling_here(job),
            &scratch.views(),
            as_of,
            stages,
            run_id,
            started,
            clock,
        )
        .await
    })
    .await
}

/// A run's work, its views stored in `stored`.
async fn run_in_scratch(
    job: &JobConfig,
    stored: &ViewDir,
    as_of: NaiveDate,
    mut stages: Stages,
    run_id: String,
    started: chrono::DateTime<Utc>,
    clock: Instant,
) -> Result<RunReport, Error> {
    stages.start("inputs");
    let ctx = views::open_session(job).await?;
    // This machine's session writes and publishes the outputs: `ctx`
    // itself, unless the job's queries run on a cluster.
    let here = crate::engine::writer::writer_of(&ctx);
    let registered = catalog::register_inputs(&ctx, job).await?;
    for input in &registered {
        tracing::info!(table = %input.table, location = %input.location, files = input.files.len(), "input");
    }

    // Before any work: a publication a dead run left is finished (forward
    // or back), and a second run on the same output is refused. (After the
    // inputs are listed, so that missing inputs are the error a run with
    // missing inputs reports.)
    let mut staging = Staging::begin(&here, &job.output, &run_id).await?;

    // Whatever happens next, the output's lock is released (on S3 it is an
    // object only this run can remove before its lease ends).
    let published: Result<RunReport, Error> = async {
        stages.start("validation");
        let window = views::register_input_views(
            &ctx,
            job,
            as_of,
            Some(stored),
            validate::CleanColumns::ReadByKpis,
        )
        .await?;
        let counts = validate::count_rows(&ctx).await?;
        for c in &counts {
            tracing::info!(table = %c.table, rows_in = c.visible, rejected = c.rejected, "validated");
        }
        validate::enforce_reject_ratio(&ctx, &counts, job.run.max_reject_ratio).await?;

        // Every join of the KPI views has a side of at most one row per
        // customer (segments, per-customer aggregates) or a few rows (months,
        // segments): hash joins with that side as the build side stream the
        // other once, where sort-merge joins sorted whole inputs by customer.
        session::prefer_hash_joins(&ctx)?;
        // Each family's stage covers its views and writing its tables, so the
        // timings say what every family costs.
        let params = kpi::sql_params(job, &window);
        kpi::register_dimensions(&ctx, &params, Some(stored)).await?;
        let mut outputs = Vec::new();
        for family in kpi::FAMILIES {
            stages.start(family.name);
            kpi::register_family(&ctx, family, job, &window, &params, Some(stored)).await?;
            for table in family.outputs {
                let writing = Instant::now();
                let rows = staging.write_table(&ctx, table).await?;
                let elapsed_s = log_seconds(writing.elapsed().as_secs_f64());
                tracing::info!(
                    stage = family.name,
                    table = table.name,
                    rows,
                    elapsed_s,
                    "written"
                );
                outputs.push((table.name.to_string(), rows));
            }
        }
        stages.start("rejects");
        // A handful of rows out of the stored checked inputs: decode only those.
        // (A filter that keeps few rows; turned on for every scan, where the
        // clean views keep nearly all rows, decoding filters first made a
        // run slower: benches/README.md, "Measured reasons".)
        let pushdown_before = session::set_options(
            &ctx,
            &[("datafusion.execution.parquet.pushdown_filters", "true")],
        )?;
        let writing = Instant::now();
        let written = staging.write_table(&ctx, &REJECTS).await;
        session::restore_options(&ctx, pushdown_before)?;
        let rows = written?;
        let elapsed_s = log_seconds(writing.elapsed().as_secs_f64());
        tracing::info!(
            stage = "rejects",
            table = REJECTS.name,
            rows,
            elapsed_s,
            "written"
        );
        outputs.push((REJECTS.name.to_string(), rows));

        let output_location = staging.location().to_string();
        let mut timings = stages.done();
        let before_publishing = clock.elapsed().as_secs_f64();
        timings.push(("total".into(), before_publishing));
        let manifest = manifest(
            job,
            &run_id,
            &window,
            started,
            &registered,
            &counts,
            &outputs,
            &timings,
        );
        // The previous run's report goes before its tables do (see
        // output::REPORT); one that cannot be removed is a warning.
        if let Err(e) = output::remove_output_file(&here, &job.output, output::REPORT).await {
            tracing::warn!(error = %e, "the previous report could not be removed");
        }
        staging.publish(manifest).await?;
        // The manifest cannot time its own publication; the report can.
        let total = clock.elapsed().as_secs_f64();
        timings.pop();
        timings.push(("publishing".into(), total - before_publishing));
        timings.push(("total".into(), total));
        let elapsed_s = log_seconds(total - before_publishing);
        tracing::info!(stage = "publishing", elapsed_s, "done");
        tracing::info!(elapsed_s = log_seconds(total), "run published");
        Ok(RunReport {
            run_id,
            as_of,
            first_month: window.first_month,
            output_path: output_location,
            inputs: counts,
            outputs,
            timings,
        })
    }
    .await;
    staging.release().await;
    published
}

/// `cskpi recover`: finishes a publication a dead run left at the job's
/// output (forward or back, see output/journal.rs).
pub async fn recover(job: &JobConfig) -> Result<Recovery, Error> {
    let ctx = session::build(job)?;
    Ok(output::recover(&ctx, &job.output).await?)
}

/// Hash of the effective job (after defaults), so a changed knob shows.
pub fn config_hash(job: &JobConfig) -> String {
    let canonical = serde_json::to_vec(job).expect("config serialises");
    format!("{:x}", Sha256::digest(canonical))
}

#[allow(clippy::too_many_arguments)]
fn manifest(
    job: &JobConfig,
    run_id: &str,
    window: &RunWindow,
    started: chrono::DateTime<Utc>,
    registered: &[RegisteredInput],
    counts: &[InputCounts],
    outputs: &[(String, u64)],
    timings: &[(String, f64)],
) -> serde_json::Value {
    let inputs: Vec<serde_json::Value> = counts
        .iter()
        .map(|c| {
            let files = registered
                .iter()
                .find(|r| r.table == c.table)
                .map(|r| serde_json::to_value(&r.files).expect("files serialise"))
                .unwrap_or(serde_json::Value::Null);
            let location = registered
                .iter()
                .find(|r| r.table == c.table)
                .map(|r| r.location.clone());
            serde_json::json!({
                "table": c.table,
                "location": location,
                "files": files,
                "rows_in": c.visible,
                "rows_rejected": c.rejected,
            })
        })
        .collect();
    serde_json::json!({
        "run_id": run_id,
        "as_of": window.as_of.to_string(),
        "first_month": window.first_month.to_string(),
        "config_hash": config_hash(job),
        "tool": "cskpi",
        "tool_version": env!("CARGO_PKG_VERSION"),
        "format": job.output.format.name(),
        "started_at": started.to_rfc3339(),
        "finished_at": Utc::now().to_rfc3339(),
        "inputs": inputs,
        "outputs": outputs.iter().map(|(t, n)| serde_json::json!({"table": t, "rows": n})).collect::<Vec<_>>(),
        "timings_seconds": timings.iter().map(|(s, t)| serde_json::json!({"stage": s, "seconds": t})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_hash_follows_the_job_not_the_runs_scratch() {
        let job = JobConfig::parse(
            "[input]\ncustomers = \"c/\"\norders = \"o/\"\ntickets = \"t/\"\n\
             [output]\npath = \"out/\"\n",
        )
        .unwrap();
        let mut in_scratch = job.clone();
        in_scratch.run.spill_dir = Some("/tmp/cskpi-work-1234/spill".into());
        assert_eq!(config_hash(&job), config_hash(&in_scratch));
        let mut changed = job.clone();
        changed.run.max_reject_ratio = 0.5;
        assert_ne!(config_hash(&job), config_hash(&changed));
    }
}
