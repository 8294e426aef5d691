//! A run's scratch directory, `cskpi-work-*` in the work directory: the
//! checked inputs and stored views of one run. A run removes its own when
//! it ends; a killed run cannot, so each run writes its process id and the
//! process's start time into `owner`, and the next run removes the scratch
//! directories whose owner is no longer alive (and only those: a directory
//! without an owner file, or of a live process, stays).

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::session::SessionError;

const PREFIX: &str = "cskpi-work-";
const OWNER: &str = "owner";

/// Creates this run's scratch directory in `work_dir`, first removing the
/// ones killed runs left there.
pub fn create(work_dir: &Path) -> Result<TempDir, SessionError> {
    let failed = |e: std::io::Error| SessionError::TempDir {
        dir: work_dir.display().to_string(),
        message: format!("cannot create a work directory: {e}"),
    };
    fs::create_dir_all(work_dir).map_err(failed)?;
    for dir in remove_stale(work_dir) {
        tracing::info!(dir = %dir.display(), "removed the scratch directory of a run that is no longer alive");
    }
    let scratch = tempfile::Builder::new()
        .prefix(PREFIX)
        .tempdir_in(work_dir)
        .map_err(failed)?;
    let me = Owner::current().map_err(failed)?;
    fs::write(scratch.path().join(OWNER), me.to_string()).map_err(failed)?;
    Ok(scratch)
}

/// Removes the scratch directories in `work_dir` whose owner process is
/// gone; returns them.
pub fn remove_stale(work_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(work_dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let named = entry.file_name().to_string_lossy().starts_with(PREFIX);
        if !named || !path.is_dir() {
            continue;
        }
        let owner = fs::read_to_string(path.join(OWNER))
            .ok()
            .and_then(|text| text.parse::<Owner>().ok());
        match owner {
            Some(owner) if !owner.is_alive() => match fs::remove_dir_all(&path) {
                Ok(()) => removed.push(path),
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove stale scratch")
                }
            },
            _ => {}
        }
    }
    removed
}

/// A process, told apart from a later one with the same id by its start
/// time (clock ticks after boot, /proc/<pid>/stat field 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    pid: u32,
    start: u64,
}

impl Owner {
    fn current() -> std::io::Result<Owner> {
        let pid = std::process::id();
        Ok(Owner {
            pid,
            start: start_time(pid)?,
        })
    }

    fn is_alive(&self) -> bool {
        start_time(self.pid).is_ok_and(|start| start == self.start)
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.pid, self.start)
    }
}

impl std::str::FromStr for Owner {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.split_whitespace();
        let pid = parts.next().and_then(|p| p.parse().ok()).ok_or(())?;
        let start = parts.next().and_then(|s| s.parse().ok()).ok_or(())?;
        Ok(Owner { pid, start })
    }
}

/// The start time of process `pid`; an error when there is no such process.
fn start_time(pid: u32) -> std::io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields from the last ')'. Field 3 is the first after it.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name
        .split_whitespace()
        .nth(22 - 3)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("/proc/{pid}/stat: no start time")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_scratch_goes_a_live_runs_and_unowned_ones_stay() {
        let work = tempfile::tempdir().unwrap();
        let make = |name: &str, owner: Option<String>| {
            let dir = work.path().join(name);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("data.parquet"), b"x").unwrap();
            if let Some(owner) = owner {
                fs::write(dir.join(OWNER), owner).unwrap();
            }
            dir
        };
        // A process that has ended: its id no longer has that start time.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let ended = Owner {
            pid: child.id(),
            start: start_time(child.id()).unwrap_or(0),
        };
        child.wait().unwrap();
        let live = Owner::current().unwrap();
        // The same id as this process but another start time: a reused id.
        let reused = Owner {
            pid: live.pid,
            start: live.start + 1,
        };
        let dead_dir = make("cskpi-work-dead", Some(ended.to_string()));
        let reused_dir = make("cskpi-work-reused", Some(reused.to_string()));
        let live_dir = make("cskpi-work-live", Some(live.to_string()));
        let unowned_dir = make("cskpi-work-unowned", None);
        let other_dir = make("other", Some(ended.to_string()));

        let mut removed = remove_stale(work.path());
        removed.sort();
        assert_eq!(removed, [dead_dir.clone(), reused_dir.clone()]);
        assert!(!dead_dir.exists() && !reused_dir.exists());
        assert!(live_dir.exists() && unowned_dir.exists() && other_dir.exists());
    }

    #[test]
    fn a_new_scratch_directory_names_its_owner() {
        let work = tempfile::tempdir().unwrap();
        let scratch = create(work.path()).unwrap();
        let owner: Owner = fs::read_to_string(scratch.path().join(OWNER))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(owner, Owner::current().unwrap());
        assert!(owner.is_alive());
    }
}
