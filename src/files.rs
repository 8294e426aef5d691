//! Local files that readers see whole or not at all.

use std::path::Path;

/// Writes `bytes` to `aside` (beside `file`, on the same file system) and
/// renames it to `file`: a reader, or the next run after this process is
/// killed midway, finds the old file, or the new one whole, never half of
/// it. `aside` is removed when either step fails.
pub fn write_whole(file: &Path, aside: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(aside, bytes)
        .and_then(|()| std::fs::rename(aside, file))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(aside);
        })
}
