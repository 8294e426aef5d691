//! The top-level error of the library: one variant per layer, each carrying
//! that layer's own error type, and the process exit code it maps to.

use crate::catalog::InputError;
use crate::config::ConfigError;
use crate::csi::CsiError;
use crate::datagen::GenError;
use crate::engine::session::SessionError;
use crate::engine::sql::SqlError;
use crate::output::OutputError;
use crate::validate::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Kpi(#[from] SqlError),
    #[error(transparent)]
    Csi(#[from] CsiError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Gen(#[from] GenError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[cfg(feature = "distributed")]
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("query engine: {0}")]
    Engine(#[from] datafusion::error::DataFusionError),
    /// Reading or writing a file, stdin, stdout or the terminal outside
    /// the engine (the shell's `ShellError::Io`); `what` names it, `source`
    /// keeps the io error.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A command used the wrong way (e.g. `--format parquet` without `-o`).
    #[error("{0}")]
    Usage(String),
}

impl From<datafusion::arrow::error::ArrowError> for Error {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        Error::Engine(e.into())
    }
}

/// Exit codes, documented in the README for schedulers.
pub mod exit_code {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const CONFIG: i32 = 3;
    pub const INPUT_SCHEMA: i32 = 4;
    pub const TOO_MANY_REJECTS: i32 = 5;
    pub const OUTPUT: i32 = 6;
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Csi(CsiError::ItemsNotAnswered { .. }) => exit_code::CONFIG,
            Error::Input(_) => exit_code::INPUT_SCHEMA,
            Error::Validation(ValidationError::TooManyRejects { .. }) => {
                exit_code::TOO_MANY_REJECTS
            }
            Error::Output(_) => exit_code::OUTPUT,
            Error::Usage(_) => exit_code::USAGE,
            _ => exit_code::FAILURE,
        }
    }

    /// One line for the terminal or a scheduler's log.
    pub fn one_line(&self) -> String {
        one_line(self)
    }
}

/// An error's message on one line: its lines trimmed and joined.
pub fn one_line(error: &dyn std::fmt::Display) -> String {
    error
        .to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
