//! Publishing on local disk: each `<path>/<table>/` directory is swapped
//! with its staged copy in one atomic `renameat2(RENAME_EXCHANGE)` (a plain
//! rename when the table is new), so the previous files end up in the
//! staging area until the journal's publication is over. The staged
//! directory's inode, in the journal, tells later which of the two a
//! table's directory is. A lock file keeps two runs from publishing at
//! once.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{
    JOURNAL, Journal, JournalTable, MANIFEST, OutputError, STAGING_PREFIX, StagedTable, Target, io,
};

pub(super) struct LocalTarget {
    root: PathBuf,
    staging_name: String,
    _lock: File,
}

impl LocalTarget {
    /// Takes the output directory's lock (held until dropped).
    pub(super) fn open(path: &str, run_id: &str) -> Result<Self, OutputError> {
        let root = PathBuf::from(path.strip_prefix("file://").unwrap_or(path));
        fs::create_dir_all(&root).map_err(io(&root))?;
        let lock_path = root.join(".cskpi.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(OutputError::Locked {
                    path: root,
                    lock: lock_path,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        Ok(Self {
            root,
            staging_name: format!("{STAGING_PREFIX}{run_id}"),
            _lock: lock,
        })
    }

    fn staging(&self) -> PathBuf {
        self.root.join(&self.staging_name)
    }

    /// Makes the root directory's entries (renames, a new journal) durable.
    fn sync_root(&self) -> Result<(), OutputError> {
        File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.root))
    }
}

#[async_trait]
impl Target for LocalTarget {
    fn staging_name(&self) -> &str {
        &self.staging_name
    }

    fn staged_dir(&self, table: &str) -> Result<String, OutputError> {
        let dir = self.staging().join(table);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(format!("{}/", dir.display()))
    }

    /// Renames the staged files to their published names in place.
    async fn staged_files(&self, table: &str) -> Result<Vec<String>, OutputError> {
        let root = self.staging().join(table);
        let mut staged = Vec::new();
        collect_files(&root, &root, &mut staged)?;
        staged.sort();
        Ok(staged)
    }

    async fn remove_leftover_staging(&self) -> Result<(), OutputError> {
        for entry in fs::read_dir(&self.root).map_err(io(&self.root))? {
            let entry = entry.map_err(io(&self.root))?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
            {
                tracing::info!(dir = %entry.path().display(), "removing staging left by an earlier run");
                fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
            }
        }
        Ok(())
    }

    async fn stage_manifest(&self, manifest: &[u8]) -> Result<(), OutputError> {
        let path = self.staging().join(MANIFEST);
        fs::write(&path, manifest).map_err(io(&path))
    }

    async fn keep_previous(&self, table: &StagedTable) -> Result<JournalTable, OutputError> {
        let staged = self.staging().join(&table.name);
        let live = self.root.join(&table.name);
        let previous_files = if live.exists() {
            let mut files = Vec::new();
            collect_files(&live, &live, &mut files)?;
            files.sort();
            Some(files)
        } else {
            None
        };
        // The exchange leaves the previous directory where the new one was.
        let at = format!("{}/{}", self.staging_name, table.name);
        Ok(JournalTable {
            name: table.name.clone(),
            new_at: at.clone(),
            new_files: table.files.clone(),
            previous_at: at,
            previous_files,
            new_inode: Some(inode(&staged)?),
            delta: None,
        })
    }

    async fn replace(&self, table: &JournalTable) -> Result<(), OutputError> {
        swap_into_place(&self.root.join(&table.new_at), &self.root.join(&table.name))?;
        self.sync_root()
    }

    async fn restore(&self, table: &JournalTable) -> Result<(), OutputError> {
        let live = self.root.join(&table.name);
        let kept = self.root.join(&table.previous_at);
        // Between the two renames of the fallback swap, the previous
        // directory waits under its `.previous` name.
        let waiting = kept.with_extension("previous");
        let live_is_new = live.exists() && Some(inode(&live)?) == table.new_inode;
        if !live.exists() && waiting.exists() {
            // Between two renames of a fallback swap: `waiting` holds the
            // previous directory (replacing) or the new one (restoring).
            let previous = if Some(inode(&waiting)?) == table.new_inode {
                &kept
            } else {
                &waiting
            };
            fs::rename(previous, &live).map_err(io(&live))?;
        } else if live_is_new {
            if table.previous_files.is_none() {
                fs::remove_dir_all(&live).map_err(io(&live))?;
            } else if waiting.exists() {
                fs::rename(&live, &kept).map_err(io(&kept))?;
                fs::rename(&waiting, &live).map_err(io(&live))?;
            } else {
                swap_into_place(&kept, &live)?;
            }
        }
        self.sync_root()
    }

    async fn all_in_place(&self, journal: &Journal) -> Result<bool, OutputError> {
        for table in &journal.tables {
            let live = self.root.join(&table.name);
            if !live.exists() || Some(inode(&live)?) != table.new_inode {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn publish_manifest(&self, staging: &str) -> Result<(), OutputError> {
        let staged = self.root.join(staging).join(MANIFEST);
        let live = self.root.join(MANIFEST);
        File::open(&staged)
            .and_then(|f| f.sync_all())
            .map_err(io(&staged))?;
        fs::rename(&staged, &live).map_err(io(&live))?;
        self.sync_root()
    }

    async fn remove_staging(&self, staging: &str) -> Result<(), OutputError> {
        let dir = self.root.join(staging);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&dir)(e)),
            _ => Ok(()),
        }
    }

    async fn read_journal(&self) -> Result<Option<Journal>, OutputError> {
        let path = self.root.join(JOURNAL);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| OutputError::Journal {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    async fn write_journal(&self, journal: &Journal) -> Result<(), OutputError> {
        let tmp = self.root.join(format!(".{JOURNAL}.tmp"));
        let text = serde_json::to_vec_pretty(journal).expect("journal serialises");
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        std::io::Write::write_all(&mut file, &text)
            .and_then(|()| file.sync_all())
            .map_err(io(&tmp))?;
        let path = self.root.join(JOURNAL);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        self.sync_root()
    }

    async fn remove_journal(&self) -> Result<(), OutputError> {
        let path = self.root.join(JOURNAL);
        fs::remove_file(&path).map_err(io(&path))?;
        self.sync_root()
    }

    async fn published_manifest(&self) -> Result<Option<Vec<u8>>, OutputError> {
        let path = self.root.join(MANIFEST);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The lock file's lock goes with the target.
    async fn release(&self) {}

    /// An flock cannot be lost while the file is open.
    async fn ensure_locked(&self) -> Result<(), OutputError> {
        Ok(())
    }

    fn abandon(&self) {
        let staging = self.staging();
        if staging.exists() {
            let _ = fs::remove_dir_all(&staging);
        }
    }
}

#[cfg(unix)]
fn inode(path: &Path) -> Result<u64, OutputError> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata(path).map_err(io(path))?.ino())
}

/// Every file under `dir`, relative to `root`, with `/` separators.
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), OutputError> {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            let relative = path.strip_prefix(root).expect("under root");
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// Puts `staged` at `live`; afterwards `staged` holds the previous `live`.
fn swap_into_place(staged: &Path, live: &Path) -> Result<(), OutputError> {
    if !live.exists() {
        return fs::rename(staged, live).map_err(io(live));
    }
    match exchange(staged, live) {
        Ok(()) => Ok(()),
        // Filesystems without RENAME_EXCHANGE: two renames, a short window
        // where the table directory is absent (never mixed).
        Err(_) => {
            let old = staged.with_extension("previous");
            fs::rename(live, &old).map_err(io(live))?;
            fs::rename(staged, live).map_err(io(live))?;
            fs::rename(&old, staged).map_err(io(staged))
        }
    }
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both paths are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_replaces_a_table_directory_and_keeps_the_old_one_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let live = tmp.path().join("t");
        let staged = tmp.path().join("staged");
        fs::create_dir_all(&live).unwrap();
        fs::write(live.join("old.parquet"), b"old").unwrap();
        fs::create_dir_all(&staged).unwrap();
        fs::write(staged.join("new.parquet"), b"new").unwrap();
        swap_into_place(&staged, &live).unwrap();
        assert!(live.join("new.parquet").exists());
        assert!(!live.join("old.parquet").exists());
        assert!(staged.join("old.parquet").exists());
    }
}
