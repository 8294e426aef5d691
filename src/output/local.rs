//! Publishing on local disk: each `<path>/<table>/` directory is swapped
//! with its staged copy in one atomic `renameat2(RENAME_EXCHANGE)` (a plain
//! rename when the table is new). A lock file keeps two runs from
//! publishing at once.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{
    MANIFEST, OutputError, STAGING_PREFIX, StagedFile, StagedTable, Target, io, published_names,
};

pub(super) struct LocalTarget {
    root: PathBuf,
    staging: PathBuf,
    _lock: File,
}

impl LocalTarget {
    /// Takes the output directory's lock and removes the staging
    /// directories that killed runs left.
    pub(super) fn begin(path: &str, run_id: &str) -> Result<Self, OutputError> {
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
        for entry in fs::read_dir(&root).map_err(io(&root))? {
            let entry = entry.map_err(io(&root))?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
            {
                tracing::info!(dir = %entry.path().display(), "removing staging left by an earlier run");
                fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
            }
        }
        let staging = root.join(format!("{STAGING_PREFIX}{run_id}"));
        fs::create_dir_all(&staging).map_err(io(&staging))?;
        Ok(Self {
            root,
            staging,
            _lock: lock,
        })
    }
}

#[async_trait]
impl Target for LocalTarget {
    fn staged_dir(&self, table: &str) -> Result<String, OutputError> {
        let dir = self.staging.join(table);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(format!("{}/", dir.display()))
    }

    /// Renames the staged files to their published names in place.
    async fn name_staged_files(&self, table: &str) -> Result<Vec<StagedFile>, OutputError> {
        let root = self.staging.join(table);
        let mut staged = Vec::new();
        collect_files(&root, &root, &mut staged)?;
        let mut named = Vec::new();
        for (relative, published) in published_names(staged) {
            if relative != published {
                let (from, to) = (root.join(&relative), root.join(&published));
                fs::rename(&from, &to).map_err(io(&to))?;
            }
            named.push(StagedFile {
                staged: published.clone(),
                name: published,
            });
        }
        Ok(named)
    }

    async fn publish(&self, tables: &[StagedTable], manifest: Vec<u8>) -> Result<(), OutputError> {
        for table in tables {
            swap_into_place(
                &self.staging.join(&table.name),
                &self.root.join(&table.name),
            )?;
        }
        let tmp = self.staging.join(MANIFEST);
        fs::write(&tmp, manifest).map_err(io(&tmp))?;
        let manifest_path = self.root.join(MANIFEST);
        fs::rename(&tmp, &manifest_path).map_err(io(&manifest_path))?;
        // The staging directory now holds the previous run's tables.
        fs::remove_dir_all(&self.staging).map_err(io(&self.staging))
    }

    fn abandon(&self) {
        if self.staging.exists() {
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
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
