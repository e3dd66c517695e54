//! Shared test harness: starts the sandbox in-process on 127.0.0.1:0 and runs the real
//! `realign` binary against it, in a scratch directory holding a copy of the example spec.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use realign::sandbox::{self, SandboxConfig, SandboxHandle, Stats};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A scratch working directory with `territories/` copied in.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir::with_spec("territories")
    }

    /// A workdir whose `territories/` is a copy of `src` (relative to the repository).
    pub fn with_spec(src: &str) -> Workdir {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(&Path::new(REPO).join(src), &dir.path().join("territories"));
        Workdir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn spec(&self) -> PathBuf {
        self.path().join("territories")
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Starts a sandbox on 127.0.0.1:0 with the given config.
pub async fn sandbox_with(config: SandboxConfig) -> SandboxHandle {
    sandbox::start(config).await.expect("sandbox starts")
}

pub async fn sandbox() -> SandboxHandle {
    sandbox_with(SandboxConfig::default()).await
}

/// The real binary, run in `cwd`, with the environment pointing at `sb`, or at no
/// Zoho at all when `sb` is None (which selects the embedded sandbox).
pub fn realign(cwd: &Path, sb: Option<&SandboxHandle>, args: &[&str]) -> Output {
    realign_at(cwd, sb.map(|s| s.base_url()).as_deref(), args)
}

pub fn realign_at(cwd: &Path, url: Option<&str>, args: &[&str]) -> Output {
    command(cwd, url, args).output().expect("realign runs")
}

/// The real binary as a [`Command`], environment set as for [`realign_at`].
pub fn command(cwd: &Path, url: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_realign"));
    cmd.current_dir(cwd).args(args);
    for k in [
        "ZOHO_CLIENT_ID",
        "ZOHO_CLIENT_SECRET",
        "ZOHO_REFRESH_TOKEN",
        "ZOHO_DC",
        "ZOHO_ACCOUNTS_URL",
        "ZOHO_API_DOMAIN",
        "REALIGN_LOG",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("REALIGN_CACHE_DIR", cwd.join(".cache"));
    if let Some(url) = url {
        cmd.env("ZOHO_CLIENT_ID", sandbox::CLIENT_ID)
            .env("ZOHO_CLIENT_SECRET", sandbox::CLIENT_SECRET)
            .env("ZOHO_REFRESH_TOKEN", sandbox::REFRESH_TOKEN)
            .env("ZOHO_ACCOUNTS_URL", url)
            .env("ZOHO_API_DOMAIN", url);
    }
    cmd
}

/// [`realign`] off the async runtime, so an in-process sandbox keeps serving.
pub async fn realign_async(cwd: &Path, sb: Option<&SandboxHandle>, args: &[&str]) -> Output {
    let cwd = cwd.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let url = sb.map(|s| s.base_url());
    tokio::task::spawn_blocking(move || {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        realign_at(&cwd, url.as_deref(), &argv)
    })
    .await
    .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Calls to endpoints whose key contains `needle`.
pub fn calls(stats: &Stats, needle: &str) -> u64 {
    stats
        .by_endpoint
        .iter()
        .filter(|(k, _)| k.contains(needle))
        .map(|(_, v)| v)
        .sum()
}
