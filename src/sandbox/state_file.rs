//! The state file: the org loaded at start, written atomically after changes (at most
//! every [`FLUSH_EVERY`] while dirty) and on shutdown, so runs one after another
//! (`realign plan`, then `realign apply`) see the same org.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::store::{SeedSpec, Snapshot, Store};
use super::SandboxError;

pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Loads the org from `path`, or seeds it (and writes the file) when there is none.
pub fn load_or_seed(path: &Path, seed: SeedSpec) -> Result<Store, SandboxError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let store = Store::new(seed);
            write(path, &store.snapshot())?;
            return Ok(store);
        }
        Err(e) => {
            return Err(SandboxError::StateUnreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
    };
    let corrupt = |reason: String| SandboxError::StateCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    let snapshot: Snapshot = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if snapshot.seed.name != seed.name || snapshot.seed.layout != seed.layout {
        return Err(SandboxError::StateSeedMismatch {
            path: path.to_path_buf(),
            found: snapshot.seed.name,
            wanted: seed.name,
        });
    }
    Store::from_snapshot(snapshot).map_err(corrupt)
}

/// Writes `snapshot` to a temporary file beside `path`, then renames it into place.
pub fn write(path: &Path, snapshot: &Snapshot) -> Result<(), SandboxError> {
    let fail = |e: std::io::Error| SandboxError::StateWrite {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sandbox-state.json".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let json = serde_json::to_vec(snapshot).map_err(|e| fail(std::io::Error::other(e)))?;
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    file.write_all(&json).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::seed::Layout;

    fn spec(name: &str) -> SeedSpec {
        SeedSpec {
            name: name.into(),
            layout: Layout::Field,
            accounts: 10,
        }
    }

    #[test]
    fn corrupt_and_mismatched_files_are_errors_not_empty_orgs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{\"format\": 1, \"seed\":").unwrap();
        let err = load_or_seed(&path, spec("demo")).err().unwrap();
        assert!(matches!(err, SandboxError::StateCorrupt { .. }));
        assert!(err.to_string().contains("delete it"), "{err}");
        std::fs::remove_file(&path).unwrap();
        load_or_seed(&path, spec("demo")).unwrap();
        assert!(path.exists());
        let err = load_or_seed(&path, spec("large")).err().unwrap();
        assert!(matches!(err, SandboxError::StateSeedMismatch { .. }));
    }
}
