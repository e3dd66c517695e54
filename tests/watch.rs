//! `realign watch` through the real binary against an in-process sandbox: edits applied
//! within seconds, broken files never applied, drift healed, clean exit on SIGTERM, and
//! the ways files change under it (atomic saves, a symlink swap of the whole directory).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use realign::sandbox::SandboxHandle;
use serde_json::Value;

use crate::util::{calls, command, Workdir};

const FIRST_ID: u64 = 5725767000000400001;
const FRANCE: &str = "# yaml-language-server: $schema=../../schemas/territory.schema.json\nname: France\nparent: EMEA\naccounts:\n  rules:\n    - name: france\n      field: Billing_Country\n      in: [France, Monaco, Belgium]\n";
const BENELUX: &str = "# yaml-language-server: $schema=../../schemas/territory.schema.json\nname: Benelux\nparent: EMEA\naccounts:\n  rules:\n    - name: benelux\n      field: Billing_Country\n      in: [Netherlands, The Netherlands, Luxembourg]\n";

/// A running `realign watch`, its stderr in a file; killed if a test fails midway.
struct Watch {
    child: Child,
    log: PathBuf,
}

impl Watch {
    fn start(w: &Workdir, sb: &SandboxHandle, args: &[&str]) -> Watch {
        let log = w.path().join("watch.log");
        let mut argv = vec!["watch"];
        argv.extend_from_slice(args);
        let child = command(w.path(), Some(&sb.base_url()), &argv)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("realign watch starts");
        Watch { child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Passes finished so far (done or failed).
    fn passes(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                let Some(at) = l.find("pass ") else {
                    return false;
                };
                let rest = &l[at + 5..];
                let digits = rest.chars().take_while(char::is_ascii_digit).count();
                digits > 0
                    && (rest[digits..].starts_with(" done")
                        || rest[digits..].starts_with(" failed"))
            })
            .count()
    }

    async fn wait_log(&mut self, needle: &str, within: Duration) {
        let found = self.wait(within, |w| w.log().contains(needle)).await;
        assert!(
            found,
            "no `{needle}` in the log within {within:?}:\n{}",
            self.log()
        );
    }

    async fn wait_passes(&mut self, n: usize, within: Duration) {
        let found = self.wait(within, |w| w.passes() >= n).await;
        assert!(found, "not {n} passes within {within:?}:\n{}", self.log());
    }

    async fn wait(&mut self, within: Duration, ok: impl Fn(&Watch) -> bool) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if ok(self) {
                return true;
            }
            self.assert_alive();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ok(self)
    }

    fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("realign watch exited ({status}):\n{}", self.log());
        }
    }

    /// SIGTERM, then the exit code and how long the exit took.
    async fn terminate(&mut self) -> (i32, Duration) {
        let sent = Instant::now();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        while sent.elapsed() < Duration::from_secs(10) {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), sent.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "realign watch did not exit within 10 s of SIGTERM:\n{}",
            self.log()
        );
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn record(sb: &SandboxHandle, id: &str) -> Value {
    sb.record("Accounts", id).expect("the record exists")
}

async fn territory(sb: &SandboxHandle, id: &str) -> String {
    record(sb, id).await["Territory"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// An account in Belgium that the spec as shipped puts in Benelux.
async fn belgian_account(sb: &SandboxHandle) -> String {
    for i in 0..2500u64 {
        let id = (FIRST_ID + 13 * i).to_string();
        let r = record(sb, &id).await;
        let country = r["Billing_Country"].as_str().unwrap_or("");
        if country.trim().eq_ignore_ascii_case("belgium") && r["Territory"] == "Benelux" {
            return id;
        }
    }
    panic!("the demo seed has no Belgian account in Benelux");
}

/// Polls until the record's territory is `want`; the time it took.
async fn wait_territory(sb: &SandboxHandle, id: &str, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let now = territory(sb, id).await;
        if now == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{id} is in `{now}`, not `{want}`, {within:?} after the change"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What an editor does on save: write a temporary file beside it, then rename it over.
fn save_atomically(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

async fn puts(sb: &SandboxHandle) -> u64 {
    calls(&sb.stats().await, "PUT ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_applies_edits_keeps_the_last_good_spec_heals_drift_and_exits_on_sigterm() {
    let sb = crate::util::sandbox().await;
    let w = Workdir::new();
    let emea = w.spec().join("emea");
    let (france, benelux) = (emea.join("france.yaml"), emea.join("benelux.yaml"));
    let (france_was, benelux_was) = (
        fs::read_to_string(&france).unwrap(),
        fs::read_to_string(&benelux).unwrap(),
    );
    let mut watch = Watch::start(&w, &sb, &["territories", "--interval", "2s"]);
    watch.wait_passes(1, Duration::from_secs(60)).await;
    assert!(
        puts(&sb).await > 0,
        "the first pass applies the spec:\n{}",
        watch.log()
    );
    let be = belgian_account(&sb).await;

    // An edit moves Belgium from Benelux to France.
    save_atomically(&france, FRANCE);
    save_atomically(&benelux, BENELUX);
    let took = wait_territory(&sb, &be, "France", Duration::from_secs(5)).await;
    eprintln!("edit to applied: {:.2} s", took.as_secs_f64());

    // A broken file: logged with file and line, nothing written, the loop goes on.
    let before = puts(&sb).await;
    let passes = watch.passes();
    fs::write(&benelux, "name: Benelux\naccounts:\n  rules:\n    - name: benelux\n      field: Billing_Country\n     in: [Belgium]\n").unwrap();
    watch
        .wait_log("benelux.yaml:6", Duration::from_secs(5))
        .await;
    watch
        .wait_log("keeping the last good spec", Duration::from_secs(5))
        .await;
    watch.wait_passes(passes + 2, Duration::from_secs(15)).await;
    assert_eq!(
        puts(&sb).await,
        before,
        "a broken spec sends no write:\n{}",
        watch.log()
    );
    assert_eq!(territory(&sb, &be).await, "France");

    // The fix (back to the spec as shipped) is applied.
    save_atomically(&france, &france_was);
    save_atomically(&benelux, &benelux_was);
    let took = wait_territory(&sb, &be, "Benelux", Duration::from_secs(5)).await;
    eprintln!("fix to applied: {:.2} s", took.as_secs_f64());

    // Someone moves the record by hand in the CRM: the next resync moves it back.
    sb.edit_record("Accounts", &be, serde_json::json!({"Territory": "Japan"}))
        .unwrap();
    let took = wait_territory(&sb, &be, "Benelux", Duration::from_secs(10)).await;
    eprintln!("hand edit to healed: {:.2} s", took.as_secs_f64());
    watch
        .wait_log("1 of them are drift", Duration::from_secs(5))
        .await;

    let (code, took) = watch.terminate().await;
    eprintln!("SIGTERM to exit: {:.2} s", took.as_secs_f64());
    assert_eq!(code, 0, "{}", watch.log());
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(watch.log().contains("stopped"), "{}", watch.log());
    assert_eq!(sb.stats().await.throttled, 0);
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_save_is_seen_and_an_ambiguous_half_of_an_edit_is_refused() {
    let sb = crate::util::sandbox().await;
    let w = Workdir::new();
    let emea = w.spec().join("emea");
    // A long interval: only the file watcher can pick the edits up.
    let mut watch = Watch::start(&w, &sb, &["territories", "--interval", "1h"]);
    watch.wait_passes(1, Duration::from_secs(60)).await;
    let be = belgian_account(&sb).await;
    let before = puts(&sb).await;

    // France claims Belgium while Benelux still does: equal claims, refused.
    save_atomically(&emea.join("france.yaml"), FRANCE);
    watch.wait_passes(2, Duration::from_secs(5)).await;
    let log = watch.log();
    assert!(
        log.contains("refused") && log.contains("claimed equally"),
        "{log}"
    );
    assert_eq!(
        puts(&sb).await,
        before,
        "an ambiguous spec sends no write:\n{log}"
    );
    assert_eq!(territory(&sb, &be).await, "Benelux");

    // The other half of the edit makes it valid.
    save_atomically(&emea.join("benelux.yaml"), BENELUX);
    wait_territory(&sb, &be, "France", Duration::from_secs(5)).await;
    let (code, _) = watch.terminate().await;
    assert_eq!(code, 0, "{}", watch.log());
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_swap_of_the_whole_directory_is_applied() {
    let sb = crate::util::sandbox().await;
    let w = Workdir::new();
    crate::util::copy_dir(&w.spec(), &w.path().join("v1"));
    crate::util::copy_dir(&w.spec(), &w.path().join("v2"));
    fs::write(w.path().join("v2/emea/france.yaml"), FRANCE).unwrap();
    fs::write(w.path().join("v2/emea/benelux.yaml"), BENELUX).unwrap();
    std::os::unix::fs::symlink("v1", w.path().join("live")).unwrap();
    let mut watch = Watch::start(&w, &sb, &["live", "--interval", "1h"]);
    watch.wait_passes(1, Duration::from_secs(60)).await;
    let be = belgian_account(&sb).await;

    // As Kubernetes updates a mounted ConfigMap: a new symlink renamed over the old one.
    std::os::unix::fs::symlink("v2", w.path().join("live.new")).unwrap();
    fs::rename(w.path().join("live.new"), w.path().join("live")).unwrap();
    let took = wait_territory(&sb, &be, "France", Duration::from_secs(5)).await;
    eprintln!("symlink swap to applied: {:.2} s", took.as_secs_f64());

    // The watch follows the new directory: an edit inside v2 is seen too.
    save_atomically(
        &w.path().join("v2/emea/benelux.yaml"),
        &fs::read_to_string(w.path().join("v1/emea/benelux.yaml")).unwrap(),
    );
    save_atomically(
        &w.path().join("v2/emea/france.yaml"),
        &fs::read_to_string(w.path().join("v1/emea/france.yaml")).unwrap(),
    );
    wait_territory(&sb, &be, "Benelux", Duration::from_secs(5)).await;
    let (code, _) = watch.terminate().await;
    assert_eq!(code, 0, "{}", watch.log());
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspend_file_holds_changes_and_metrics_count_the_passes() {
    let sb = crate::util::sandbox().await;
    let w = Workdir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    w.write(
        "territories/.realign-suspend",
        "quarter-end close, ask sales-ops\n",
    );
    let mut watch = Watch::start(
        &w,
        &sb,
        &["territories", "--interval", "1s", "--listen", &listen],
    );
    watch.wait_passes(2, Duration::from_secs(60)).await;
    let log = watch.log();
    assert!(log.contains("quarter-end close, ask sales-ops"), "{log}");
    assert_eq!(
        puts(&sb).await,
        0,
        "a suspended watch writes nothing:\n{log}"
    );

    let metrics = reqwest::get(format!("http://{listen}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("realign_paused 1"), "{metrics}");
    assert!(
        metrics.contains("# TYPE realign_passes_total counter"),
        "{metrics}"
    );
    let health = reqwest::get(format!("http://{listen}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    fs::remove_file(w.spec().join(".realign-suspend")).unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    let applied = loop {
        let metrics = reqwest::get(format!("http://{listen}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let applied: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("realign_changes_applied_total "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if applied > 0 || Instant::now() > until {
            break applied;
        }
        watch.assert_alive();
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(applied > 0, "resumed:\n{}", watch.log());
    assert!(puts(&sb).await > 0, "resumed:\n{}", watch.log());
    let (code, _) = watch.terminate().await;
    assert_eq!(code, 0, "{}", watch.log());
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_mode_applies_spec_edits_but_leaves_drift_alone() {
    let sb = crate::util::sandbox().await;
    let w = Workdir::new();
    let be = belgian_account(&sb).await;
    let mut watch = Watch::start(
        &w,
        &sb,
        &["territories", "--interval", "1s", "--drift", "report"],
    );
    watch.wait_passes(2, Duration::from_secs(60)).await;
    assert_eq!(
        puts(&sb).await,
        0,
        "drift is only reported:\n{}",
        watch.log()
    );
    let log = watch.log();
    let line = log
        .lines()
        .find(|l| l.contains("drift, left alone"))
        .unwrap_or_else(|| panic!("{log}"));
    let drifted = line
        .split(": ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let drifted_was = territory(&sb, &drifted).await;

    let emea = w.spec().join("emea");
    save_atomically(&emea.join("france.yaml"), FRANCE);
    save_atomically(&emea.join("benelux.yaml"), BENELUX);
    wait_territory(&sb, &be, "France", Duration::from_secs(5)).await;
    watch
        .wait_passes(watch.passes() + 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        territory(&sb, &drifted).await,
        drifted_was,
        "drifted {drifted} left alone:\n{}",
        watch.log()
    );
    let (code, _) = watch.terminate().await;
    assert_eq!(code, 0, "{}", watch.log());
    sb.shutdown().await.unwrap();
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=realign test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_pull_before_each_resync_applies_the_pushed_commit_and_survives_a_failed_pull() {
    let sb = crate::util::sandbox().await;
    let w = Workdir::new();
    let root = w.path();
    git(root, &["init", "--quiet", "--bare", "origin.git"]);
    git(root, &["clone", "--quiet", "origin.git", "work"]);
    crate::util::copy_dir(&w.spec(), &root.join("work/territories"));
    git(&root.join("work"), &["checkout", "--quiet", "-b", "main"]);
    git(&root.join("work"), &["add", "territories"]);
    git(
        &root.join("work"),
        &["commit", "--quiet", "-m", "territories"],
    );
    git(&root.join("work"), &["push", "--quiet", "origin", "main"]);
    git(
        root,
        &["clone", "--quiet", "--branch", "main", "origin.git", "live"],
    );
    let mut watch = Watch::start(
        &w,
        &sb,
        &["live/territories", "--interval", "1s", "--git-pull"],
    );
    watch.wait_passes(1, Duration::from_secs(60)).await;
    let be = belgian_account(&sb).await;

    // A reviewed change is merged upstream; the watcher's checkout has not seen it.
    fs::write(root.join("work/territories/emea/france.yaml"), FRANCE).unwrap();
    fs::write(root.join("work/territories/emea/benelux.yaml"), BENELUX).unwrap();
    git(
        &root.join("work"),
        &["commit", "--quiet", "-am", "Belgium moves to France"],
    );
    git(&root.join("work"), &["push", "--quiet", "origin", "main"]);
    let commit = git(&root.join("work"), &["rev-parse", "HEAD"]);
    wait_territory(&sb, &be, "France", Duration::from_secs(10)).await;
    watch
        .wait_log(&format!("applying {commit}"), Duration::from_secs(5))
        .await;

    // The remote goes away: the pull fails, is logged, and the loop goes on.
    fs::rename(root.join("origin.git"), root.join("gone.git")).unwrap();
    watch
        .wait_log("`git pull --ff-only`", Duration::from_secs(10))
        .await;
    let n = watch.passes();
    watch.wait_passes(n + 2, Duration::from_secs(15)).await;
    assert_eq!(territory(&sb, &be).await, "France");
    let (code, _) = watch.terminate().await;
    assert_eq!(code, 0, "{}", watch.log());
    sb.shutdown().await.unwrap();
}
