//! All or nothing across tables: the write-ahead journal of publishing.
//!
//! Before the first table is replaced, `_publish_journal.json` is written
//! beside the outputs (atomically: a rename on disk, one PUT on S3). It
//! names the run, its staging area and, per table, where the new files are
//! and where the previous run's files are kept until the new manifest is
//! in place. Then each table is replaced, the journal is rewritten to say
//! every table is in place, the manifest is replaced, the staging area
//! (holding the previous files) is removed, and the journal is removed
//! last.
//!
//! A journal found later means a run died while publishing. [`recover`]
//! then rolls the output forward when the new run's tables were all in
//! place (or its manifest was), and otherwise back to the previous run,
//! table by table; every step can be repeated, so a recovery that dies
//! is finished by the next one.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{OutputError, StagedTable, Target};

pub const JOURNAL: &str = "_publish_journal.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Journal {
    pub run_id: String,
    /// The run's staging area, relative to the output path.
    pub staging: String,
    pub phase: Phase,
    pub tables: Vec<JournalTable>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Phase {
    /// Tables are being replaced: some may be new, some previous.
    Replacing,
    /// Every table is the new run's; the manifest may not be yet.
    TablesInPlace,
    /// A recovery decided to roll back and is putting tables back.
    RollingBack,
    /// A recovery put every table back to the previous run's files; what is
    /// left is removing the staging area and the journal.
    RolledBack,
}

/// One table of a publication, paths relative to the output path.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct JournalTable {
    pub name: String,
    /// Where the new run's files are before they are put in place.
    pub new_at: String,
    /// The new files, relative to the table's directory.
    pub new_files: Vec<String>,
    /// Where the previous run's files are kept while publishing.
    pub previous_at: String,
    /// The previous files, relative to the table's directory; `None` when
    /// the table did not exist before.
    pub previous_files: Option<Vec<String>>,
    /// Local disk: the new directory's inode, which tells whether the
    /// table's directory is the new one or the previous one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_inode: Option<u64>,
    /// Delta outputs: the table's versions before and after the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaVersions>,
}

/// A Delta table's part of a publication.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct DeltaVersions {
    /// The version readers saw before the run; `None` for a new table.
    pub previous: Option<u64>,
    /// The version this run's commit creates.
    pub new: u64,
    pub partition_by: Option<String>,
}

/// What [`recover`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// No journal: the output is one run's.
    Consistent,
    /// A run died before its tables were all in place: the previous run's
    /// tables are back.
    RolledBack { run_id: String },
    /// A run died after its tables were all in place: its manifest is
    /// written and its leftovers removed.
    RolledForward { run_id: String },
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recovery::Consistent => write!(f, "consistent: no interrupted publication"),
            Recovery::RolledBack { run_id } => write!(
                f,
                "rolled back the interrupted publication of run {run_id}: the previous run's tables are in place"
            ),
            Recovery::RolledForward { run_id } => write!(
                f,
                "rolled forward the interrupted publication of run {run_id}: its tables and manifest are in place"
            ),
        }
    }
}

/// Publishes the staged tables and manifest under the journal.
pub(super) async fn publish(
    target: &dyn Target,
    run_id: &str,
    tables: &[StagedTable],
    mut manifest: serde_json::Value,
) -> Result<(), OutputError> {
    let mut faults = Faults::from_env();
    let staging = target.staging_name().to_string();
    let mut kept = Vec::with_capacity(tables.len());
    for table in tables {
        kept.push(target.keep_previous(table).await?);
    }
    target.prepare_manifest(&mut manifest, &kept).await?;
    let text = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    target.stage_manifest(&text).await?;
    let mut journal = Journal {
        run_id: run_id.to_string(),
        staging,
        phase: Phase::Replacing,
        tables: kept,
    };
    target.ensure_locked().await?;
    target.write_journal(&journal).await?;
    let replaced = async {
        for table in &journal.tables {
            faults.step().await?;
            target.replace(table).await?;
        }
        faults.step().await?;
        journal.phase = Phase::TablesInPlace;
        target.write_journal(&journal).await?;
        faults.step().await?;
        target.publish_manifest(&journal.staging).await
    }
    .await;
    if let Err(error) = replaced {
        // Put the output back to one run now if the target lets us (a cut
        // network may not); otherwise the journal stays for the next run
        // or `cskpi recover`.
        match recover(target).await {
            // Every new table was in place: the publication is complete.
            Ok(done @ Recovery::RolledForward { .. }) => {
                tracing::warn!(error = %error, %done, "a step of publishing failed");
                return Ok(());
            }
            Ok(done) => tracing::warn!(%done, "publishing failed"),
            Err(e) => tracing::warn!(
                error = %e,
                journal = JOURNAL,
                "publishing failed and the output could not be restored now: the next run or `cskpi recover` will"
            ),
        }
        return Err(error);
    }
    // The new run is published; what is left is cleaning up, which the
    // next run finishes if this fails.
    let cleaned = async {
        faults.step().await?;
        target.remove_staging(&journal.staging).await?;
        faults.step().await?;
        target.remove_journal().await
    }
    .await;
    if let Err(e) = cleaned {
        tracing::warn!(error = %e, "published; removing the previous files failed, the next run will");
    } else if let Err(e) = target.after_publish(&manifest).await {
        tracing::warn!(error = %e, "published; tidying the tables failed, the next run will");
    }
    Ok(())
}

/// Finishes a publication a dead run left: forward when its tables were
/// all in place, back otherwise. Without a journal, nothing to do.
pub(super) async fn recover(target: &dyn Target) -> Result<Recovery, OutputError> {
    let Some(journal) = target.read_journal().await? else {
        return Ok(Recovery::Consistent);
    };
    let manifest_is_new = target
        .published_manifest()
        .await?
        .and_then(|bytes| super::run_id_of_manifest(&bytes))
        .as_deref()
        == Some(&journal.run_id);
    let rolling_back = matches!(journal.phase, Phase::RollingBack | Phase::RolledBack);
    let forward = !rolling_back
        && (manifest_is_new
            || journal.phase == Phase::TablesInPlace
            || target.all_in_place(&journal).await?);
    if forward {
        if !manifest_is_new {
            target.publish_manifest(&journal.staging).await?;
        }
    } else if journal.phase != Phase::RolledBack {
        // Once a rollback has begun, a restored table can look new again (a
        // Delta restore is a new version): no later recovery may go forward.
        if journal.phase != Phase::RollingBack {
            let mut rolling_back = journal.clone();
            rolling_back.phase = Phase::RollingBack;
            target.write_journal(&rolling_back).await?;
        }
        for table in journal.tables.iter().rev() {
            target.restore(table).await?;
        }
        // Removing the staging area removes the previous files a repeated
        // rollback would copy: say first that none is needed.
        let mut rolled_back = journal.clone();
        rolled_back.phase = Phase::RolledBack;
        target.write_journal(&rolled_back).await?;
    }
    target.remove_staging(&journal.staging).await?;
    target.remove_journal().await?;
    let run_id = journal.run_id;
    Ok(if forward {
        Recovery::RolledForward { run_id }
    } else {
        Recovery::RolledBack { run_id }
    })
}

/// Fault injection for the publishing fault tests, from
/// `CSKPI_FAULT_PUBLISH`: `pause=MS` waits before every step of publishing
/// (so a test can kill the process or cut the network between any two),
/// `fail=N` makes step N (from 1) fail as a full disk or a refused write
/// would. Comma-separated; unset in normal runs.
struct Faults {
    pause: Option<Duration>,
    fail_at: Option<usize>,
    steps: usize,
}

impl Faults {
    fn from_env() -> Self {
        let spec = std::env::var("CSKPI_FAULT_PUBLISH").unwrap_or_default();
        let mut faults = Faults {
            pause: None,
            fail_at: None,
            steps: 0,
        };
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("pause", ms)) => faults.pause = ms.parse().ok().map(Duration::from_millis),
                Some(("fail", n)) => faults.fail_at = n.parse().ok(),
                _ => tracing::warn!(part, "CSKPI_FAULT_PUBLISH: unknown setting ignored"),
            }
        }
        faults
    }

    async fn step(&mut self) -> Result<(), OutputError> {
        self.steps += 1;
        tracing::debug!(step = self.steps, "publishing");
        if let Some(pause) = self.pause {
            tokio::time::sleep(pause).await;
        }
        if self.fail_at == Some(self.steps) {
            return Err(OutputError::Injected { step: self.steps });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_reads_back_as_written() {
        let journal = Journal {
            run_id: "r1".into(),
            staging: ".cskpi-staging-r1".into(),
            phase: Phase::TablesInPlace,
            tables: vec![JournalTable {
                name: "mrr_monthly".into(),
                new_at: ".cskpi-staging-r1/mrr_monthly".into(),
                new_files: vec!["part-0.parquet".into()],
                previous_at: ".cskpi-staging-r1/mrr_monthly".into(),
                previous_files: None,
                new_inode: Some(7),
                delta: None,
            }],
        };
        let text = serde_json::to_string(&journal).unwrap();
        assert!(text.contains("\"phase\":\"tables_in_place\""), "{text}");
        let back: Journal = serde_json::from_str(&text).unwrap();
        assert_eq!(back.tables[0].new_inode, Some(7));
        assert_eq!(back.phase, Phase::TablesInPlace);
        assert!(back.tables[0].previous_files.is_none());
    }
}
