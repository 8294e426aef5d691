//! The job file (spec section 6): what to read, where to write, and the
//! knobs of every KPI family. Parsed with serde; unknown keys are errors so
//! that a typo in a nightly job fails loudly instead of being ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::csi::{CsiConfig, CsiModel, default_csi_scale};
use crate::feedback::Taxonomy;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read job file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("job file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("job file: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    pub input: InputConfig,
    pub output: OutputConfig,
    #[serde(default)]
    pub run: RunConfig,
    #[serde(default)]
    pub s3: Option<S3Config>,
    #[serde(default)]
    pub renewal: RenewalConfig,
    #[serde(default)]
    pub csat: CsatConfig,
    #[serde(default)]
    pub value: ValueConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub csi: Option<CsiConfig>,
    #[serde(default)]
    pub feedback: FeedbackConfig,
    /// Where the job runs. Not part of the config hash: a cluster computes
    /// the same outputs as this machine.
    #[serde(default, skip_serializing)]
    pub cluster: ClusterConfig,
    /// Built from the sections above and checked once, when the job file
    /// is read.
    #[serde(skip)]
    built: Built,
}

/// What the job's sections describe, built from them once.
#[derive(Debug, Clone)]
struct Built {
    csi_model: Option<CsiModel>,
    taxonomy: Taxonomy,
    health_weights: HealthWeights,
}

impl Default for Built {
    fn default() -> Self {
        Self {
            csi_model: None,
            taxonomy: Taxonomy::built_in(),
            health_weights: HealthConfig::default().weights_over_defaults(),
        }
    }
}

/// Locations of the input tables: a file, a directory or an `s3://` URL.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    pub customers: String,
    pub orders: String,
    pub tickets: String,
    pub surveys: Option<String>,
    pub usage: Option<String>,
    pub costs: Option<String>,
}

impl InputConfig {
    /// Every input table with its location, if configured: the one list of
    /// the six inputs' fields (in the order of `inputs::ALL`).
    pub fn locations(&self) -> [(&'static str, Option<&str>); 6] {
        [
            ("customers", Some(&self.customers)),
            ("orders", Some(&self.orders)),
            ("tickets", Some(&self.tickets)),
            ("surveys", self.surveys.as_deref()),
            ("usage", self.usage.as_deref()),
            ("costs", self.costs.as_deref()),
        ]
    }

    /// The configured locations, to rewrite them.
    fn locations_mut(&mut self) -> impl Iterator<Item = &mut String> {
        [
            Some(&mut self.customers),
            Some(&mut self.orders),
            Some(&mut self.tickets),
        ]
        .into_iter()
        .chain([
            self.surveys.as_mut(),
            self.usage.as_mut(),
            self.costs.as_mut(),
        ])
        .flatten()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    pub path: String,
    /// cskpi extension, S3 outputs only: how long the output's lock holds
    /// without renewal, i.e. how long a killed run's lock keeps other runs
    /// out (a running run renews it every fifth of this).
    #[serde(default = "default_lock_lease_seconds")]
    pub lock_lease_seconds: u64,
    /// cskpi extension: `parquet` (plain Parquet files per table) or `delta`
    /// (a Delta Lake table per table, one commit per run).
    #[serde(default)]
    pub format: OutputFormat,
    /// cskpi extension, Delta outputs only: how many published runs' versions
    /// of each table stay readable (time travel); older data files are
    /// vacuumed after each run.
    #[serde(default = "default_keep_versions")]
    pub keep_versions: u32,
    /// cskpi extension: write `report.html` beside the tables after each
    /// run (a failed report is a warning, never a failed run).
    #[serde(default = "default_report")]
    pub report: bool,
}

fn default_report() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Parquet,
    Delta,
}

impl OutputFormat {
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::Delta => "delta",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// First reported month, `YYYY-MM` (or a date; its month is used).
    pub from: Option<Month>,
    #[serde(default = "default_segment_by")]
    pub segment_by: String,
    #[serde(default = "default_max_reject_ratio")]
    pub max_reject_ratio: f64,
    /// cskpi extension: a fixed as_of for reproducible sample jobs.
    /// `--as-of` on the command line wins over it.
    pub as_of: Option<NaiveDate>,
    /// cskpi extension: memory limit of the query engine, e.g. "4G";
    /// `--memory-limit` wins over it.
    pub memory_limit: Option<ByteSize>,
    /// cskpi extension: directory for a run's intermediate files and the
    /// engine's spill files (default: the system temporary directory), or
    /// an `s3://` prefix for the intermediate files (the spill files then
    /// go to the system temporary directory); `--temp-dir` wins over it.
    /// `work_dir` is its older name.
    #[serde(alias = "work_dir")]
    pub temp_dir: Option<String>,
    /// Not in the job file: a run's spill directory, in its scratch (wins
    /// over `temp_dir` for the engine's spill files).
    #[serde(skip)]
    pub spill_dir: Option<PathBuf>,
}

impl RunConfig {
    /// Where the engine spills: `spill_dir`, or `temp_dir` when it is a
    /// local directory; None: the system's temporary directory.
    pub fn spill_to(&self) -> Option<PathBuf> {
        self.spill_dir.clone().or_else(|| self.local_temp_dir())
    }

    /// `temp_dir` when it is a local directory (`file://` or a path); None
    /// when it is unset or an object-store prefix.
    pub fn local_temp_dir(&self) -> Option<PathBuf> {
        let dir = self.temp_dir.as_deref()?;
        match dir.strip_prefix("file://") {
            Some(path) => Some(path.into()),
            None => (!dir.contains("://")).then(|| dir.into()),
        }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            from: None,
            segment_by: default_segment_by(),
            max_reject_ratio: default_max_reject_ratio(),
            as_of: None,
            memory_limit: None,
            temp_dir: None,
            spill_dir: None,
        }
    }
}

/// cskpi extension: `[cluster]`, a run on Apache DataFusion Ballista.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The scheduler, `df://HOST:PORT`; none: the job runs on this
    /// machine. `--cluster` wins over it.
    pub scheduler: Option<String>,
    /// The job's local paths (inputs, output, temp_dir) are mounted at the
    /// same place on every node of the cluster; `--shared-fs` sets it.
    #[serde(default)]
    pub shared_fs: bool,
    /// A query sent to the cluster fails when this long passes without a
    /// batch from it (cluster/quiet.rs): Ballista 55 can wait for ever
    /// after losing an executor.
    #[serde(default = "default_quiet_limit_seconds")]
    pub quiet_limit_seconds: u64,
}

fn default_quiet_limit_seconds() -> u64 {
    3600
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            scheduler: None,
            shared_fs: false,
            quiet_limit_seconds: default_quiet_limit_seconds(),
        }
    }
}

fn default_segment_by() -> String {
    "segment".into()
}
fn default_lock_lease_seconds() -> u64 {
    300
}
fn default_keep_versions() -> u32 {
    30
}

fn default_max_reject_ratio() -> f64 {
    0.05
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    #[serde(default)]
    pub allow_http: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalConfig {
    #[serde(default = "default_grace_days")]
    pub grace_days: u32,
}
impl Default for RenewalConfig {
    fn default() -> Self {
        Self {
            grace_days: default_grace_days(),
        }
    }
}
fn default_grace_days() -> u32 {
    30
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CsatConfig {
    #[serde(default = "default_positive_min")]
    pub positive_min: f64,
}
impl Default for CsatConfig {
    fn default() -> Self {
        Self {
            positive_min: default_positive_min(),
        }
    }
}
fn default_positive_min() -> f64 {
    4.0
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ValueConfig {
    #[serde(default = "default_gross_margin")]
    pub gross_margin: f64,
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_months: f64,
    /// Spec 4.11: a segment's retention model needs this many customers.
    #[serde(default = "default_min_model_customers")]
    pub min_model_customers: u64,
    /// Spec 4.11: retention_forecast's periods.
    #[serde(default = "default_forecast_months")]
    pub forecast_months: u32,
    /// Spec 4.11: the monthly discount rate of derl_months and predicted_clv.
    #[serde(default = "default_monthly_discount")]
    pub monthly_discount: f64,
}
impl Default for ValueConfig {
    fn default() -> Self {
        Self {
            gross_margin: default_gross_margin(),
            max_lifetime_months: default_max_lifetime(),
            min_model_customers: default_min_model_customers(),
            forecast_months: default_forecast_months(),
            monthly_discount: default_monthly_discount(),
        }
    }
}
fn default_monthly_discount() -> f64 {
    0.01
}
fn default_min_model_customers() -> u64 {
    100
}
fn default_forecast_months() -> u32 {
    24
}
fn default_gross_margin() -> f64 {
    1.0
}
fn default_max_lifetime() -> f64 {
    120.0
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    #[serde(default)]
    pub weights: BTreeMap<String, f64>,
    #[serde(default = "default_green_min")]
    pub green_min: f64,
    #[serde(default = "default_yellow_min")]
    pub yellow_min: f64,
    /// Spec 4.12: the previous score is as of this many days before as_of.
    #[serde(default = "default_trend_days")]
    pub trend_days: u32,
}
impl HealthConfig {
    /// `weights` over the defaults: a component the job does not name keeps
    /// its default weight (set it to 0 to leave it out).
    fn weights_over_defaults(&self) -> HealthWeights {
        let weight = |name: &str| {
            let default = HEALTH_COMPONENTS
                .iter()
                .find(|(c, _)| *c == name)
                .map(|(_, w)| *w)
                .expect("a known component");
            self.weights.get(name).copied().unwrap_or(default)
        };
        HealthWeights {
            usage: weight("usage"),
            nps: weight("nps"),
            csat: weight("csat"),
            support: weight("support"),
            mrr_trend: weight("mrr_trend"),
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            weights: BTreeMap::new(),
            green_min: default_green_min(),
            yellow_min: default_yellow_min(),
            trend_days: default_trend_days(),
        }
    }
}
fn default_trend_days() -> u32 {
    30
}
fn default_green_min() -> f64 {
    70.0
}
fn default_yellow_min() -> f64 {
    40.0
}

/// A size in bytes, written as the job file and the command line write it:
/// "512M", "4G", "1.5GiB", "1073741824" (units of 1024, "B"/"iB" optional).
/// One parser for both: serde and clap go through `FromStr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ByteSize(usize);

impl ByteSize {
    pub fn bytes(self) -> usize {
        self.0
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?} is not a size like 512M, 4G or 1.5GiB");
        let t = text.trim().to_ascii_uppercase();
        let t = t.trim_end_matches("IB").trim_end_matches('B');
        let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
            Some((i, _)) => (&t[..i], &t[i..]),
            None => (t, ""),
        };
        let multiplier: f64 = match unit {
            "" => 1.0,
            "K" => 1024.0,
            "M" => 1024.0 * 1024.0,
            "G" => 1024.0 * 1024.0 * 1024.0,
            "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            _ => return Err(invalid()),
        };
        let value: f64 = number.trim().parse().map_err(|_| invalid())?;
        if value > 0.0 {
            Ok(Self((value * multiplier) as usize))
        } else {
            Err(invalid())
        }
    }
}

impl TryFrom<String> for ByteSize {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<ByteSize> for String {
    fn from(size: ByteSize) -> String {
        size.0.to_string()
    }
}

/// `[feedback]`: the theme taxonomy of comments (spec 4.6).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackConfig {
    /// theme -> keywords; the built-in taxonomy when absent.
    pub themes: Option<BTreeMap<String, Vec<String>>>,
}

/// The health score's component weights after defaults (spec 4.9).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthWeights {
    pub usage: f64,
    pub nps: f64,
    pub csat: f64,
    pub support: f64,
    pub mrr_trend: f64,
}

/// The health components, in the order of spec 4.9, with default weights.
pub const HEALTH_COMPONENTS: [(&str, f64); 5] = [
    ("usage", 0.30),
    ("nps", 0.20),
    ("csat", 0.15),
    ("support", 0.15),
    ("mrr_trend", 0.20),
];

impl JobConfig {
    /// Reads a job file; relative local paths in it are resolved against the
    /// job file's directory, so a job runs the same from any working directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_relative_paths(base);
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut config: JobConfig = toml::from_str(text).map_err(|e| {
            // The line itself: the bare message does not name the key.
            let message = match e.span() {
                Some(span) => {
                    let line = text[..span.start].matches('\n').count();
                    let written = text.lines().nth(line).unwrap_or("").trim();
                    format!("line {} ({written}): {}", line + 1, e.message())
                }
                None => e.message().to_string(),
            };
            ConfigError::Parse {
                path: PathBuf::from("<string>"),
                message,
            }
        })?;
        config.check()?;
        config.built = Built {
            csi_model: config
                .csi
                .as_ref()
                .map(|c| CsiModel::new(c).map_err(|e| ConfigError::Invalid(format!("csi: {e}"))))
                .transpose()?,
            taxonomy: Taxonomy::from_config(config.feedback.themes.as_ref())
                .map_err(|e| ConfigError::Invalid(e.to_string()))?,
            health_weights: config.health.weights_over_defaults(),
        };
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let ratio = self.run.max_reject_ratio;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(ConfigError::Invalid(format!(
                "run.max_reject_ratio must be between 0 and 1, got {ratio}"
            )));
        }
        if self.run.segment_by.trim().is_empty() {
            return Err(ConfigError::Invalid("run.segment_by is empty".into()));
        }
        for (key, weight) in &self.health.weights {
            if !HEALTH_COMPONENTS.iter().any(|(c, _)| c == key) {
                let known: Vec<&str> = HEALTH_COMPONENTS.iter().map(|(c, _)| *c).collect();
                return Err(ConfigError::Invalid(format!(
                    "health.weights: unknown component {key:?} (components: {})",
                    known.join(", ")
                )));
            }
            if !weight.is_finite() || *weight < 0.0 {
                return Err(ConfigError::Invalid(format!(
                    "health.weights.{key} must be a number >= 0, got {weight}"
                )));
            }
        }
        let h = &self.health;
        if !(h.yellow_min.is_finite() && h.green_min.is_finite() && h.yellow_min <= h.green_min) {
            return Err(ConfigError::Invalid(format!(
                "health: yellow_min ({}) must not be above green_min ({})",
                h.yellow_min, h.green_min
            )));
        }
        if h.trend_days == 0 {
            return Err(ConfigError::Invalid(
                "health.trend_days must be at least 1".into(),
            ));
        }
        if self.cluster.quiet_limit_seconds == 0 {
            return Err(ConfigError::Invalid(
                "cluster.quiet_limit_seconds must be at least 1".into(),
            ));
        }
        let v = &self.value;
        if !v.gross_margin.is_finite() || v.gross_margin < 0.0 {
            return Err(ConfigError::Invalid(format!(
                "value.gross_margin must be a number >= 0, got {}",
                v.gross_margin
            )));
        }
        if !v.max_lifetime_months.is_finite() || v.max_lifetime_months <= 0.0 {
            return Err(ConfigError::Invalid(format!(
                "value.max_lifetime_months must be > 0, got {}",
                v.max_lifetime_months
            )));
        }
        if !v.monthly_discount.is_finite() || v.monthly_discount < 0.0 {
            return Err(ConfigError::Invalid(format!(
                "value.monthly_discount must be a number >= 0, got {}",
                v.monthly_discount
            )));
        }
        if v.forecast_months == 0 {
            return Err(ConfigError::Invalid(
                "value.forecast_months must be at least 1".into(),
            ));
        }
        if self.output.path.trim().is_empty() {
            return Err(ConfigError::Invalid("output.path is empty".into()));
        }
        if self.output.keep_versions == 0 {
            return Err(ConfigError::Invalid(
                "output.keep_versions must be at least 1 (the published run)".into(),
            ));
        }
        Ok(())
    }

    /// `csi.scale` (default 1-10): the range a csi survey score must lie in.
    pub fn csi_scale(&self) -> (f64, f64) {
        let [min, max] = self.csi.as_ref().map_or(default_csi_scale(), |c| c.scale);
        (min, max)
    }

    /// The checked CSI model, if the job has a `[csi]` section.
    pub fn csi_model(&self) -> Option<&CsiModel> {
        self.built.csi_model.as_ref()
    }

    /// `[health.weights]` over the defaults.
    pub fn health_weights(&self) -> HealthWeights {
        self.built.health_weights
    }

    /// The theme taxonomy comments are read with.
    pub fn feedback_taxonomy(&self) -> &Taxonomy {
        &self.built.taxonomy
    }

    /// The first reported month, if the job sets one.
    pub fn from_month(&self) -> Option<NaiveDate> {
        self.run.from.map(Month::first_day)
    }

    fn resolve_relative_paths(&mut self, base: &Path) {
        let resolve = |p: &mut String| {
            if !p.contains("://") && Path::new(p.as_str()).is_relative() {
                let joined = base.join(p.as_str());
                let mut s = joined.to_string_lossy().into_owned();
                // Keep the trailing slash that marks a directory.
                if p.ends_with('/') && !s.ends_with('/') {
                    s.push('/');
                }
                *p = s;
            }
        };
        for p in self.input.locations_mut() {
            resolve(p);
        }
        resolve(&mut self.output.path);
        if let Some(w) = &mut self.run.temp_dir
            && !w.contains("://")
            && Path::new(w).is_relative()
        {
            *w = base.join(&*w).to_string_lossy().into_owned();
        }
    }
}

/// A calendar month, written `YYYY-MM` (or a date, whose month is meant);
/// serde reads it through `FromStr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Month(NaiveDate);

impl Month {
    pub fn first_day(self) -> NaiveDate {
        self.0
    }
}

impl std::str::FromStr for Month {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let date = NaiveDate::parse_from_str(&format!("{t}-01"), "%Y-%m-%d")
            .or_else(|_| NaiveDate::parse_from_str(t, "%Y-%m-%d"))
            .map_err(|_| format!("expected a month YYYY-MM, got {text:?}"))?;
        Ok(Self(crate::calendar::month_start(date)))
    }
}

impl TryFrom<String> for Month {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<Month> for String {
    fn from(month: Month) -> String {
        month.0.format("%Y-%m").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csi::CsiWeights;

    #[test]
    fn sizes() {
        let bytes = |text: &str| text.parse::<ByteSize>().map(ByteSize::bytes);
        assert_eq!(bytes("512M"), Ok(512 << 20));
        assert_eq!(bytes("4G"), Ok(4 << 30));
        assert_eq!(bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(bytes("1024"), Ok(1024));
        assert!(
            bytes("lots")
                .unwrap_err()
                .contains("\"lots\" is not a size")
        );
        assert!(bytes("0").is_err());
    }
    use crate::csi::pls::Scheme;

    #[test]
    fn minimal_job_gets_spec_defaults() {
        let c = JobConfig::parse(
            "[input]\ncustomers='c'\norders='o'\ntickets='t'\n[output]\npath='out'\n",
        )
        .unwrap();
        assert_eq!(c.run.segment_by, "segment");
        assert_eq!(c.run.max_reject_ratio, 0.05);
        assert_eq!(c.renewal.grace_days, 30);
        assert_eq!(c.csat.positive_min, 4.0);
    }

    #[test]
    fn typo_in_a_key_is_an_error() {
        let err = JobConfig::parse(
            "[input]\ncustomers='c'\norders='o'\ntickets='t'\n[output]\npath='out'\n[run]\nmax_reject_ration=0.1\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("max_reject_ration"), "{err}");
    }

    #[test]
    fn csi_section_is_typed_with_spec_defaults() {
        let base = "[input]\ncustomers='c'\norders='o'\ntickets='t'\n[output]\npath='out'\n";
        let c = JobConfig::parse(&format!(
            "{base}[csi]\nscale = [0, 5]\n[csi.factors]\nsatisfaction = ['s1', 's2']\nvalue = ['v1']\n\
             [csi.paths]\nsatisfaction = ['value']\n"
        ))
        .unwrap();
        assert_eq!(c.csi_scale(), (0.0, 5.0));
        let csi = c.csi.as_ref().unwrap();
        assert_eq!(csi.weights, CsiWeights::Method("pls".into()));
        assert_eq!(
            (csi.min_respondents, csi.tolerance, csi.max_iterations),
            (30, 1e-6, 100)
        );
        assert_eq!(csi.scheme, Scheme::Path);
        assert_eq!((csi.bootstrap, csi.seed), (200, 1));
        let c = JobConfig::parse(&format!(
            "{base}[csi]\nbootstrap = 0\nseed = 42\nscheme = 'centroid'\nscaled = true\n[csi.factors]\nsatisfaction = ['s1']\n\
             value = ['v1']\n[csi.paths]\nsatisfaction = ['value']\n"
        ))
        .unwrap();
        let model = c.csi_model().unwrap();
        assert_eq!(model.settings.scheme, Scheme::Centroid);
        assert!(model.settings.scaled);
        assert_eq!((model.bootstrap, model.seed), (0, 42));
        assert!(JobConfig::parse(&format!("{base}[csi]\nscheme = 'circle'\n")).is_err());
        let err = JobConfig::parse(&format!("{base}[csi]\nbootstrap = -1\n")).unwrap_err();
        assert!(err.to_string().contains("bootstrap"), "{err}");
        let c = JobConfig::parse(base).unwrap();
        assert_eq!(c.csi_scale(), (1.0, 10.0));
        assert!(c.csi_model().is_none());
        let err = JobConfig::parse(&format!(
            "{base}[csi]\nscale = [5, 1]\n[csi.factors]\ns = ['a']\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("scale"), "{err}");
    }

    #[test]
    fn health_weights_default_per_component_and_are_checked() {
        let base = "[input]\ncustomers='c'\norders='o'\ntickets='t'\n[output]\npath='out'\n";
        let c = JobConfig::parse(base).unwrap();
        let w = c.health_weights();
        assert_eq!(
            (w.usage, w.nps, w.csat, w.support, w.mrr_trend),
            (0.30, 0.20, 0.15, 0.15, 0.20)
        );
        let c =
            JobConfig::parse(&format!("{base}[health.weights]\nusage = 0.5\nnps = 0\n")).unwrap();
        let w = c.health_weights();
        assert_eq!((w.usage, w.nps, w.csat), (0.5, 0.0, 0.15));
        let err = JobConfig::parse(&format!("{base}[health.weights]\nlogins = 0.5\n")).unwrap_err();
        assert!(err.to_string().contains("logins"), "{err}");
        assert!(JobConfig::parse(&format!("{base}[health.weights]\nnps = -1\n")).is_err());
        assert!(JobConfig::parse(&format!("{base}[health]\ngreen_min = 30\n")).is_err());
        assert!(JobConfig::parse(&format!("{base}[value]\nmax_lifetime_months = 0\n")).is_err());
        assert!(JobConfig::parse(&format!("{base}[value]\nforecast_months = 0\n")).is_err());
        assert!(JobConfig::parse(&format!("{base}[value]\nmonthly_discount = -0.01\n")).is_err());
        assert!(JobConfig::parse(&format!("{base}[health]\ntrend_days = 0\n")).is_err());
        assert!(JobConfig::parse(&format!("{base}[health]\ntrend_days = -7\n")).is_err());
        assert!(JobConfig::parse(&format!("{base}[cluster]\nquiet_limit_seconds = 0\n")).is_err());
        assert_eq!(c.cluster.quiet_limit_seconds, 3600);
        let v = &c.value;
        assert_eq!((v.min_model_customers, v.forecast_months), (100, 24));
        assert_eq!((v.monthly_discount, c.health.trend_days), (0.01, 30));
    }

    #[test]
    fn output_format_and_kept_versions_are_checked() {
        let base = "[input]\ncustomers='c'\norders='o'\ntickets='t'\n[output]\npath='out'\n";
        let c = JobConfig::parse(base).unwrap();
        assert_eq!(
            (c.output.format, c.output.keep_versions),
            (OutputFormat::Parquet, 30)
        );
        let c = JobConfig::parse(&format!("{base}format = 'delta'\nkeep_versions = 3\n")).unwrap();
        assert_eq!(
            (c.output.format, c.output.keep_versions),
            (OutputFormat::Delta, 3)
        );
        let err = JobConfig::parse(&format!("{base}keep_versions = 0\n")).unwrap_err();
        assert!(err.to_string().contains("keep_versions"), "{err}");
        assert!(JobConfig::parse(&format!("{base}format = 'iceberg'\n")).is_err());
    }

    #[test]
    fn feedback_themes_are_checked() {
        let base = "[input]\ncustomers='c'\norders='o'\ntickets='t'\n[output]\npath='out'\n";
        let c = JobConfig::parse(&format!(
            "{base}[feedback.themes]\npricing = ['price', 'giá']\n"
        ))
        .unwrap();
        let names: Vec<_> = c
            .feedback_taxonomy()
            .theme_names()
            .map(String::from)
            .collect();
        assert_eq!(names, ["pricing"]);
        let err =
            JobConfig::parse(&format!("{base}[feedback.themes]\npricing = []\n")).unwrap_err();
        assert!(err.to_string().contains("pricing"), "{err}");
        let c = JobConfig::parse(base).unwrap();
        assert!(c.feedback_taxonomy().theme_names().count() > 5);
    }

    #[test]
    fn input_locations_name_every_input_in_order() {
        let base =
            "[input]\ncustomers='c'\norders='o'\ntickets='t'\nusage='u/'\n[output]\npath='out'\n";
        let c = JobConfig::parse(base).unwrap();
        let names: Vec<&str> = c.input.locations().iter().map(|(n, _)| *n).collect();
        let inputs: Vec<&str> = crate::inputs::ALL.iter().map(|t| t.name).collect();
        assert_eq!(names, inputs);
        assert_eq!(c.input.locations()[4], ("usage", Some("u/")));
        assert_eq!(c.input.locations()[3], ("surveys", None));
    }

    #[test]
    fn from_accepts_month_or_date() {
        let base = "[input]\ncustomers='c'\norders='o'\ntickets='t'\n[output]\npath='out'\n";
        let from = |value: &str| {
            JobConfig::parse(&format!("{base}[run]\nfrom = '{value}'\n")).map(|c| c.from_month())
        };
        let march = NaiveDate::from_ymd_opt(2025, 3, 1);
        assert_eq!(from("2025-03").unwrap(), march);
        assert_eq!(from("2025-03-17").unwrap(), march);
        let err = from("March").unwrap_err();
        assert!(err.to_string().contains("from = 'March'"), "{err}");
        assert_eq!(JobConfig::parse(base).unwrap().from_month(), None);
    }
}
