//! `realign watch`: the continuous mode. Debounced file events and a periodic resync
//! trigger reconcile passes; each pass returns an [`Outcome`] that says when to run
//! next, and one error policy ([`next_delay`] with a [`Backoff`]) spaces out retries.
//!
//! The loop ([`drive`]) is generic over a [`Reconciler`], so its scheduling is tested
//! with tokio's paused clock and no network. `Live` is the real reconciler: notify, the
//! spec loader, one session to the org, git, the suspend file and freeze windows.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::{mpsc, watch as signal_watch};
use tokio::time::{sleep_until, Instant};

use crate::cli::{Drift, WatchArgs};
use crate::plan::{self, render, Change, Plan};
use crate::reconcile::{fetch, git_commit, make_plan, run_apply_until};
use crate::run::Exit;
use crate::session::Session;
use crate::spec::{self, types::Freeze, Diagnostic, Spec, SpecError};
use crate::zoho::Client;

/// A file in DIR whose presence pauses applying; its text is the reason.
pub const SUSPEND_FILE: &str = ".realign-suspend";

/// First retry delay after a failed pass, and the most the backoff grows to.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// Changes listed one per line in a log before the rest are counted.
const LISTED_CHANGES: usize = 20;

/// What started a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Start,
    Spec,
    Resync,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Start => "start",
            Trigger::Spec => "spec",
            Trigger::Resync => "resync",
        })
    }
}

/// What a pass did, and when it wants to run again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub changes_planned: u64,
    pub applied: u64,
    /// Records not changed (Zoho refused them, or they were not sent).
    pub failed: u64,
    /// Planned changes to records that moved in Zoho since realign last applied the spec.
    pub drift: u64,
    /// Why nothing was applied although changes were planned: suspended, frozen, refused.
    pub held: Option<String>,
    pub requeue_after: Duration,
}

/// Exponential backoff: `base`, doubling with each failure up to `cap`; [`reset`](Self::reset)
/// after a success. No jitter: one watcher per org, nothing to spread out.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// The delay before the next try, counting one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(31));
        self.failures = self.failures.saturating_add(1);
        self.base.saturating_mul(factor).min(self.cap)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new(BACKOFF_BASE, BACKOFF_CAP)
    }
}

/// The one error policy: a clean pass runs again when it asked to; a failed pass, or
/// one that left records unchanged, waits out the backoff.
pub fn next_delay(result: &Result<Outcome>, backoff: &mut Backoff) -> Duration {
    match result {
        Ok(o) if o.failed == 0 => {
            backoff.reset();
            o.requeue_after
        }
        _ => backoff.next_delay(),
    }
}

/// The part of a watch that touches the world; [`drive`] decides when to call it.
#[allow(async_fn_in_trait)]
pub trait Reconciler {
    /// Reloads the spec after file events; true when it changed and a pass is due.
    async fn reload(&mut self) -> bool;
    /// One full reconcile: read the org, plan, apply (or hold), and say what happened.
    async fn pass(&mut self, trigger: Trigger) -> Result<Outcome>;
}

/// The loop's clock settings.
#[derive(Debug, Clone)]
pub struct Timing {
    pub debounce: Duration,
    pub backoff: Backoff,
}

/// Runs passes until `stop` turns true: one at once, again when the last one asked (or
/// the backoff says), and soon after a burst of file events that changed the spec. A
/// pass in flight is never cut short; it sees `stop` itself and sends no more batches.
pub async fn drive<R: Reconciler>(
    r: &mut R,
    timing: Timing,
    events: &mut mpsc::UnboundedReceiver<()>,
    stop: &mut signal_watch::Receiver<bool>,
    status: &Status,
) {
    let mut backoff = timing.backoff.clone();
    let mut next = Instant::now();
    let mut first = true;
    let mut events_open = true;
    let mut n = 0u64;
    loop {
        let trigger = tokio::select! {
            biased;
            _ = stopped(stop) => return,
            _ = sleep_until(next) => if first { Trigger::Start } else { Trigger::Resync },
            e = events.recv(), if events_open => {
                if e.is_none() {
                    events_open = false;
                    continue;
                }
                if !debounce(events, timing.debounce, stop).await {
                    return;
                }
                if !r.reload().await {
                    continue;
                }
                Trigger::Spec
            }
        };
        first = false;
        n += 1;
        tracing::debug!(pass = n, %trigger, "pass starts");
        let result = r.pass(trigger).await;
        let delay = next_delay(&result, &mut backoff);
        status.record(&result);
        match &result {
            Ok(o) => tracing::info!(
                trigger = %trigger,
                planned = o.changes_planned,
                applied = o.applied,
                failed = o.failed,
                drift = o.drift,
                held = o.held.as_deref().unwrap_or("-"),
                next_in = %human(delay),
                "pass {n} done"
            ),
            Err(e) => tracing::error!(
                trigger = %trigger,
                failures = backoff.failures(),
                next_in = %human(delay),
                "pass {n} failed: {e:#}; trying again in {}",
                human(delay)
            ),
        }
        next = Instant::now() + delay;
    }
}

/// Waits for `quiet` with no event, so an editor's save (temp file, rename, chmod) or a
/// `git pull` is read once, whole. At most ten quiet periods in all, so a steady stream
/// of events cannot hold the reload off. False when stopping.
async fn debounce(
    events: &mut mpsc::UnboundedReceiver<()>,
    quiet: Duration,
    stop: &mut signal_watch::Receiver<bool>,
) -> bool {
    let deadline = Instant::now() + quiet.saturating_mul(10);
    loop {
        let until = (Instant::now() + quiet).min(deadline);
        tokio::select! {
            biased;
            _ = stopped(stop) => return false,
            _ = sleep_until(until) => return true,
            e = events.recv() => if e.is_none() {
                sleep_until(until).await;
                return true;
            },
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut signal_watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What `/healthz` and `/metrics` report, updated by the loop.
pub struct Status {
    started: Instant,
    interval: Duration,
    passes: AtomicU64,
    failures: AtomicU64,
    /// Passes whose changes were refused (guardrails, a spec that does not plan).
    refused: AtomicU64,
    applied: AtomicU64,
    drift: AtomicU64,
    paused: AtomicBool,
    spec_valid: AtomicBool,
    last_success: Mutex<Option<Instant>>,
    client: OnceLock<Arc<Client>>,
}

impl Status {
    pub fn new(interval: Duration) -> Status {
        Status {
            started: Instant::now(),
            interval,
            passes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            drift: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            spec_valid: AtomicBool::new(false),
            last_success: Mutex::new(None),
            client: OnceLock::new(),
        }
    }

    fn record(&self, result: &Result<Outcome>) {
        self.passes.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(o) => {
                self.applied.fetch_add(o.applied, Ordering::Relaxed);
                self.drift.fetch_add(o.drift, Ordering::Relaxed);
                // A pass refused by the guardrails is not a success: a watch stuck there
                // needs a person, and /healthz should say so after a while.
                let refused = matches!(
                    o.held.as_deref(),
                    Some("over the guardrails" | "the spec does not plan")
                );
                if refused {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                } else if o.failed == 0 {
                    *self.last_success.lock().expect("status lock") = Some(Instant::now());
                } else {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Time since the last successful pass, or since the start when there was none.
    pub fn since_success(&self) -> Duration {
        let last = *self.last_success.lock().expect("status lock");
        last.unwrap_or(self.started).elapsed()
    }

    /// Healthy while a pass succeeded within three resync intervals (a minute at least).
    pub fn health(&self) -> Result<(), String> {
        let limit = self.interval.saturating_mul(3).max(Duration::from_secs(60));
        let since = self.since_success();
        if since > limit {
            return Err(format!(
                "no successful pass for {} (more than {}): see the log",
                human(since),
                human(limit)
            ));
        }
        Ok(())
    }

    /// Prometheus text exposition format, version 0.0.4.
    pub fn metrics(&self) -> String {
        let client = |f: fn(&crate::zoho::ClientStats) -> &AtomicU64| {
            self.client
                .get()
                .map(|c| f(&c.stats).load(Ordering::Relaxed))
                .unwrap_or(0)
        };
        let rows: [(&str, &str, &str, String); 10] = [
            (
                "realign_passes_total",
                "counter",
                "Reconcile passes run.",
                self.passes.load(Ordering::Relaxed).to_string(),
            ),
            (
                "realign_pass_failures_total",
                "counter",
                "Passes that failed or left records unchanged.",
                self.failures.load(Ordering::Relaxed).to_string(),
            ),
            (
                "realign_passes_refused_total",
                "counter",
                "Passes whose changes were refused (guardrails, a spec that does not plan).",
                self.refused.load(Ordering::Relaxed).to_string(),
            ),
            (
                "realign_changes_applied_total",
                "counter",
                "Record changes applied.",
                self.applied.load(Ordering::Relaxed).to_string(),
            ),
            (
                "realign_drift_found_total",
                "counter",
                "Planned changes to records changed in Zoho since realign last applied the spec.",
                self.drift.load(Ordering::Relaxed).to_string(),
            ),
            (
                "realign_throttled_total",
                "counter",
                "HTTP 429 answers from Zoho.",
                client(|s| &s.throttled).to_string(),
            ),
            (
                "realign_retries_total",
                "counter",
                "Zoho calls retried.",
                client(|s| &s.retries).to_string(),
            ),
            (
                "realign_seconds_since_last_success",
                "gauge",
                "Seconds since the last successful pass (since the start when there was none).",
                format!("{:.3}", self.since_success().as_secs_f64()),
            ),
            (
                "realign_paused",
                "gauge",
                "1 while applying is suspended or frozen.",
                u8::from(self.paused.load(Ordering::Relaxed)).to_string(),
            ),
            (
                "realign_spec_valid",
                "gauge",
                "1 when the files on disk load and validate.",
                u8::from(self.spec_valid.load(Ordering::Relaxed)).to_string(),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
        out
    }
}

/// Parses `500ms`, `30s`, `5m`, `1h`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || {
        format!("`{text}` is not a duration: write a number and a unit, e.g. `500ms`, `30s`, `5m` or `1h`")
    };
    if t.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(unit);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A duration for people: `500ms`, `30s`, `5m`, `2m30s`, `1h`.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// The reason applying is frozen on `today`, if a freeze window covers it.
pub fn freeze_reason(freeze: &[Freeze], today: chrono::NaiveDate) -> Option<String> {
    freeze.iter().find(|f| f.covers(today)).map(|f| {
        format!(
            "frozen from {} to {} by realign.yaml: {}",
            f.from.trim(),
            f.to.trim(),
            f.reason.as_deref().unwrap_or("(no reason given)")
        )
    })
}

/// The reason in a suspend file's text.
pub fn suspend_reason(path: &Path, text: &str) -> String {
    let reason = text.trim();
    format!(
        "suspended by {}: {}",
        path.display(),
        if reason.is_empty() {
            "(no reason given)"
        } else {
            reason
        }
    )
}

/// `realign watch`: runs until SIGTERM or SIGINT, then exits 0.
pub async fn watch(args: WatchArgs) -> Result<Exit> {
    let interval = parse_duration(&args.interval).map_err(|e| anyhow!("--interval: {e}"))?;
    let debounce = parse_duration(&args.debounce).map_err(|e| anyhow!("--debounce: {e}"))?;
    if interval < Duration::from_secs(1) {
        bail!(
            "--interval `{}` is under a second: give at least `1s` (the default is `5m`)",
            args.interval
        );
    }
    // Credentials that can never work (set but empty, half set, a bad ZOHO_DC) stop watch
    // at once with exit 1, instead of retrying forever.
    if let Ok(spec) = crate::spec::load_dir(&args.dir) {
        crate::settings::resolve(&|k| std::env::var(k).ok(), &spec.org)?;
    }
    let stop_rx = stop_on_signals()?;
    let status = Arc::new(Status::new(interval));
    if let Some(addr) = args.listen {
        serve_status(addr, status.clone(), stop_rx.clone()).await?;
    }

    let abs = std::path::absolute(&args.dir)
        .with_context(|| format!("cannot resolve `{}`", args.dir.display()))?;
    let (tx, mut events) = mpsc::unbounded_channel();
    let files = match DirWatcher::start(&abs, tx) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "cannot watch `{}` for changes ({e}): only the resync every {} picks up edits",
                args.dir.display(),
                human(interval)
            );
            None
        }
    };
    let mut live = Live {
        dir: args.dir.clone(),
        interval,
        drift: args.drift,
        git_pull: args.git_pull,
        files,
        spec: None,
        baseline: None,
        broken: false,
        session: None,
        status: status.clone(),
        stop: stop_rx.clone(),
    };
    tracing::info!(
        "watching {} (resync every {}, drift {}{}); SIGTERM or Ctrl-C stops",
        args.dir.display(),
        human(interval),
        match args.drift {
            Drift::Heal => "heal",
            Drift::Report => "report",
        },
        if args.git_pull {
            ", git pull before each resync"
        } else {
            ""
        }
    );
    match live.load().await {
        Ok(s) => {
            live.accept(s);
        }
        Err(e) => live.reject(&e),
    }
    let mut stop = stop_rx;
    drive(
        &mut live,
        Timing {
            debounce,
            backoff: Backoff::default(),
        },
        &mut events,
        &mut stop,
        &status,
    )
    .await;
    if let Some(s) = live.session.take() {
        s.close().await?;
    }
    tracing::info!("stopped");
    Ok(Exit::Success)
}

/// A receiver that turns true on the first SIGTERM or SIGINT; a second one exits at once.
fn stop_on_signals() -> Result<signal_watch::Receiver<bool>> {
    let (tx, rx) = signal_watch::channel(false);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // Registered before the loop starts, so an early SIGTERM is not the default kill.
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        tokio::spawn(async move {
            for i in 0.. {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                if i > 0 {
                    tracing::warn!("second signal: exiting now, the pass in flight is cut short");
                    std::process::exit(130);
                }
                tracing::info!(
                    "signal received: finishing the batches in flight, then stopping (again to stop now)"
                );
                let _ = tx.send(true);
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        crate::reconcile::shutdown_signal().await;
        let _ = tx.send(true);
        std::future::pending::<()>().await;
    });
    Ok(rx)
}

async fn serve_status(
    addr: std::net::SocketAddr,
    status: Arc<Status>,
    stop: signal_watch::Receiver<bool>,
) -> Result<()> {
    use axum::extract::State;
    use axum::http::{header, StatusCode};
    use axum::routing::get;

    if !addr.ip().is_loopback() {
        tracing::warn!(
            "--listen `{addr}` is not a loopback address: /healthz and /metrics are reachable from the network"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on `{addr}`: pick another --listen address"))?;
    let local = listener.local_addr()?;
    let router = axum::Router::new()
        .route(
            "/healthz",
            get(|State(s): State<Arc<Status>>| async move {
                match s.health() {
                    Ok(()) => (StatusCode::OK, "ok\n".to_string()),
                    Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<Arc<Status>>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    s.metrics(),
                )
            }),
        )
        .with_state(status);
    tracing::info!("serving /healthz and /metrics on http://{local}");
    tokio::spawn(async move {
        let mut stop = stop;
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stopped(&mut stop).await })
            .await;
        if let Err(e) = served {
            tracing::error!("the /metrics server stopped: {e}");
        }
    });
    Ok(())
}

/// Watches DIR recursively, and its parent so that DIR itself being replaced (a symlink
/// swapped, as Kubernetes does for mounted config) is seen too.
struct DirWatcher {
    watcher: notify::RecommendedWatcher,
    dir: PathBuf,
    /// What DIR resolves to now (path and inode): the watch follows it.
    identity: Option<(PathBuf, u64)>,
}

impl DirWatcher {
    fn start(dir: &Path, tx: mpsc::UnboundedSender<()>) -> notify::Result<DirWatcher> {
        use notify::Watcher;
        let watched = dir.to_path_buf();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
                Ok(ev) if relevant(&ev, &watched) => {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(e) => {
                    // A lost event is made good by reloading.
                    tracing::warn!("file watch: {e}");
                    let _ = tx.send(());
                }
            })?;
        if let Some(parent) = dir.parent() {
            watcher.watch(parent, notify::RecursiveMode::NonRecursive)?;
        }
        let mut w = DirWatcher {
            watcher,
            dir: dir.to_path_buf(),
            identity: None,
        };
        w.refresh();
        Ok(w)
    }

    /// Re-points the recursive watch when DIR now resolves to another directory: a watch
    /// made through a symlink stays on the directory it pointed at.
    fn refresh(&mut self) {
        use notify::Watcher;
        let now = identity(&self.dir);
        if now == self.identity {
            return;
        }
        if self.identity.is_some() {
            let _ = self.watcher.unwatch(&self.dir);
        }
        if let Some((real, _)) = &now {
            match self
                .watcher
                .watch(&self.dir, notify::RecursiveMode::Recursive)
            {
                Ok(()) => tracing::debug!("watching {}", real.display()),
                Err(e) => tracing::warn!("cannot watch `{}`: {e}", self.dir.display()),
            }
        }
        self.identity = now;
    }
}

fn identity(dir: &Path) -> Option<(PathBuf, u64)> {
    let real = std::fs::canonicalize(dir).ok()?;
    #[cfg(unix)]
    let ino = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&real).ok()?.ino()
    };
    #[cfg(not(unix))]
    let ino = 0;
    Some((real, ino))
}

/// Changes under DIR, or to DIR itself in its parent; not reads (the loader's own opens
/// would otherwise trigger reloads forever).
fn relevant(ev: &notify::Event, dir: &Path) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    if let EventKind::Access(kind) = ev.kind {
        if kind != AccessKind::Close(AccessMode::Write) {
            return false;
        }
    }
    ev.paths.is_empty() || ev.paths.iter().any(|p| p.starts_with(dir))
}

/// The real reconciler: the spec on disk, one session to the org.
struct Live {
    /// DIR as the user named it (diagnostics show paths under it).
    dir: PathBuf,
    interval: Duration,
    drift: Drift,
    git_pull: bool,
    files: Option<DirWatcher>,
    /// The last spec that loaded and validated.
    spec: Option<Spec>,
    /// The spec realign last brought the org to (or started with): differences from it
    /// are drift, made in Zoho.
    baseline: Option<Spec>,
    /// The files on disk do not load now.
    broken: bool,
    session: Option<Session>,
    status: Arc<Status>,
    stop: signal_watch::Receiver<bool>,
}

impl Reconciler for Live {
    async fn reload(&mut self) -> bool {
        if let Some(w) = &mut self.files {
            w.refresh();
        }
        match self.load().await {
            Ok(s) => self.accept(s),
            Err(e) => {
                self.reject(&e);
                false
            }
        }
    }

    async fn pass(&mut self, trigger: Trigger) -> Result<Outcome> {
        if trigger == Trigger::Resync {
            if self.git_pull {
                self.pull().await;
            }
            // A safety net for lost file events, and how a pull is picked up.
            self.reload().await;
        }
        let Some(spec) = self.spec.clone() else {
            bail!(
                "no valid spec in `{}` yet: fix the errors logged above; watch picks the fix up",
                self.dir.display()
            );
        };
        if self.session.is_none() {
            let session = Session::connect(&spec).await?;
            let _ = self.status.client.set(session.client.clone());
            self.session = Some(session);
        }
        let session = self.session.as_ref().expect("connected above");
        let client = session.client.clone();
        let target = session.target.clone();
        let mut out = Outcome {
            requeue_after: self.interval,
            ..Outcome::default()
        };

        let org = fetch(&client, &spec).await?;
        let baseline = self.baseline.clone().unwrap_or_else(|| spec.clone());
        let (planned_spec, plan) = match make_plan(&spec, &org, &target) {
            Ok(p) => (spec.clone(), p),
            Err(e) => {
                tracing::error!(
                    "refused: the spec in `{}` does not plan: {e:#}",
                    self.dir.display()
                );
                match (baseline.digest != spec.digest).then(|| make_plan(&baseline, &org, &target))
                {
                    Some(Ok(p)) => {
                        tracing::warn!(
                            "keeping the last good spec ({}): its plan is applied instead",
                            short(&baseline.digest)
                        );
                        (baseline.clone(), p)
                    }
                    _ => {
                        out.held = Some("the spec does not plan".into());
                        return Ok(out);
                    }
                }
            }
        };
        let drifted: HashSet<&spec::Id> = if baseline.digest == planned_spec.digest {
            plan.changes.iter().map(|c| &c.account_id).collect()
        } else {
            // Ids only; the plan is dropped straight away.
            let old = make_plan(&baseline, &org, &target).ok();
            let ids: HashSet<spec::Id> = old
                .map(|p| p.changes.into_iter().map(|c| c.account_id).collect())
                .unwrap_or_default();
            plan.changes
                .iter()
                .map(|c| &c.account_id)
                .filter(|id| ids.contains(*id))
                .collect()
        };
        out.changes_planned = plan.summary.changes;
        out.drift = drifted.len() as u64;
        let commit = git_commit(&planned_spec.root);
        tracing::info!(
            trigger = %trigger,
            commit = commit.as_deref().unwrap_or("-"),
            digest = short(&planned_spec.digest),
            "{}",
            render::summary_line(&plan)
        );
        if out.drift > 0 {
            tracing::info!(
                "{} of them are drift: changed in Zoho since realign last applied the spec",
                out.drift
            );
        }
        let (drift_changes, spec_changes): (Vec<Change>, Vec<Change>) = plan
            .changes
            .iter()
            .cloned()
            .partition(|c| drifted.contains(&c.account_id));
        let to_apply = match self.drift {
            Drift::Heal => plan.changes.clone(),
            Drift::Report => {
                log_changes("drift, left alone (--drift report)", &drift_changes);
                spec_changes
            }
        };

        let pause = self.pause_reason(&spec);
        self.status.paused.store(pause.is_some(), Ordering::Relaxed);
        if let Some(reason) = pause {
            tracing::warn!(
                "paused, applying nothing: {reason} ({} changes held)",
                to_apply.len()
            );
            log_changes("held", &to_apply);
            out.held = Some(reason);
            return Ok(out);
        }
        if to_apply.is_empty() {
            self.baseline = Some(planned_spec);
            return Ok(out);
        }
        let sub = subplan(&plan, to_apply);
        if let Err(msg) = plan::check_guardrails(&sub, &spec.org.guardrails) {
            tracing::error!("refused: {msg}");
            tracing::warn!(
                "watch never overrides the guardrails: review with `realign plan`, then apply by hand with `realign apply --allow-large-change`, or raise the guardrail in realign.yaml"
            );
            out.held = Some("over the guardrails".into());
            return Ok(out);
        }
        crate::zoho::ratelimit::check_budget(sub.cost.write_credits, client.credits_remaining())
            .map_err(|e| anyhow!(e))?;
        if *self.stop.borrow() {
            tracing::info!("stopping: the planned changes are not applied");
            return Ok(out);
        }
        let mut stop = self.stop.clone();
        let report = run_apply_until(client, &sub, &planned_spec, async move {
            stopped(&mut stop).await;
        })
        .await?;
        for f in &report.failed {
            tracing::warn!("not changed: {} `{}` {}", f.id, f.code, f.message);
        }
        out.applied = report.applied.len() as u64;
        out.failed = (report.failed.len() + report.not_sent.len()) as u64;
        if let Some(why) = &report.stopped {
            if !*self.stop.borrow() {
                bail!("the apply stopped early: {why}");
            }
        }
        if out.failed == 0 {
            self.baseline = Some(planned_spec);
        }
        Ok(out)
    }
}

impl Live {
    async fn load(&self) -> Result<Spec, SpecError> {
        let dir = self.dir.clone();
        let loaded = tokio::task::spawn_blocking(move || spec::load_dir(&dir))
            .await
            .map_err(|e| {
                SpecError::Invalid(vec![Diagnostic::new(&self.dir, 0, 0, e.to_string())])
            })?;
        loaded
    }

    /// Takes a spec that loaded; true when it differs from the last good one.
    fn accept(&mut self, spec: Spec) -> bool {
        let was_broken = std::mem::replace(&mut self.broken, false);
        self.status.spec_valid.store(true, Ordering::Relaxed);
        if self.spec.as_ref().is_some_and(|s| s.digest == spec.digest) {
            if was_broken {
                tracing::info!(
                    "the spec in {} loads again, the same as the last good spec",
                    self.dir.display()
                );
            }
            return false;
        }
        tracing::info!(
            digest = short(&spec.digest),
            commit = git_commit(&spec.root).as_deref().unwrap_or("-"),
            "spec loaded: {} territories",
            spec.territories.len()
        );
        if self.baseline.is_none() {
            self.baseline = Some(spec.clone());
        }
        self.spec = Some(spec);
        true
    }

    /// Logs every problem at file:line:col and keeps the last good spec.
    fn reject(&mut self, e: &SpecError) {
        self.broken = true;
        self.status.spec_valid.store(false, Ordering::Relaxed);
        let diags = e.diagnostics();
        if diags.is_empty() {
            tracing::error!("{e}");
        }
        for d in diags {
            tracing::error!(
                file = %d.file.display(),
                line = d.line,
                column = d.column,
                "{d}"
            );
        }
        match &self.spec {
            Some(s) => tracing::warn!(
                "the spec in `{}` does not load; nothing from it is applied: keeping the last good spec ({}) until the files are fixed",
                self.dir.display(),
                short(&s.digest)
            ),
            None => tracing::warn!(
                "the spec in `{}` does not load and there is no good spec yet: waiting for the files to be fixed",
                self.dir.display()
            ),
        }
    }

    fn pause_reason(&self, spec: &Spec) -> Option<String> {
        let path = self.dir.join(SUSPEND_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => return Some(suspend_reason(&path, &text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Some(format!(
                    "suspended: `{}` exists but cannot be read ({e})",
                    path.display()
                ))
            }
        }
        freeze_reason(&spec.org.freeze, chrono::Utc::now().date_naive())
    }

    /// `git pull --ff-only` in DIR's repository; a failure is logged and the spec on disk
    /// (or the last good one) is used.
    async fn pull(&self) {
        let before = git_commit(&self.dir);
        let run = tokio::process::Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(["pull", "--ff-only", "--quiet"])
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(Duration::from_secs(120), run).await {
            Ok(Ok(o)) if o.status.success() => {
                let after = git_commit(&self.dir);
                let at = after.as_deref().unwrap_or("-");
                if before != after {
                    tracing::info!(
                        commit = at,
                        "git pull: {} -> {at}; applying {at}",
                        before.as_deref().unwrap_or("-")
                    );
                } else {
                    tracing::info!(commit = at, "git pull: up to date at {at}");
                }
            }
            Ok(Ok(o)) => tracing::error!(
                "`git pull --ff-only` in `{}` failed ({}): {}; keeping the spec on disk, fix the checkout",
                self.dir.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Ok(Err(e)) => tracing::error!(
                "cannot run `git pull` in `{}`: {e}; is git installed?",
                self.dir.display()
            ),
            Err(_) => tracing::error!(
                "`git pull` in `{}` took over 120 s and was stopped; keeping the spec on disk",
                self.dir.display()
            ),
        }
    }
}

/// `plan` with only `changes`, counted and priced again (for guardrails and credits).
fn subplan(plan: &Plan, changes: Vec<Change>) -> Plan {
    let mut sub = plan.clone();
    sub.summary.changes = changes.len() as u64;
    sub.cost = plan::diff::estimate(
        plan.summary.records as usize,
        &changes,
        plan.cost.batch_size.max(1) as usize,
    );
    sub.changes = changes;
    sub
}

fn log_changes(what: &str, changes: &[Change]) {
    for c in changes.iter().take(LISTED_CHANGES) {
        tracing::info!("{what}: {}", crate::plan::render::change_line(c));
    }
    if changes.len() > LISTED_CHANGES {
        tracing::info!(
            "{what}: and {} more (`realign plan` lists them all)",
            changes.len() - LISTED_CHANGES
        );
    }
}

fn short(digest: &str) -> &str {
    let d = digest.strip_prefix("sha256:").unwrap_or(digest);
    &d[..d.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_bare_numbers() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in ["", "30", "5 m", "m", "1d", "-1s"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
        assert_eq!(human(Duration::from_secs(150)), "2m30s");
        assert_eq!(human(Duration::from_millis(500)), "500ms");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let got: Vec<u64> = (0..12).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), Duration::from_secs(300), "no overflow");
    }

    #[test]
    fn a_pass_with_unchanged_records_backs_off_like_an_error() {
        let mut b = Backoff::default();
        let ok = Outcome {
            requeue_after: Duration::from_secs(60),
            ..Outcome::default()
        };
        let partial = Outcome {
            failed: 3,
            ..ok.clone()
        };
        assert_eq!(next_delay(&Err(anyhow!("down")), &mut b), BACKOFF_BASE);
        assert_eq!(next_delay(&Ok(partial), &mut b), BACKOFF_BASE * 2);
        assert_eq!(next_delay(&Ok(ok), &mut b), Duration::from_secs(60));
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn freeze_windows_include_both_ends() {
        let f = Freeze {
            from: "2026-03-25".into(),
            to: "2026-04-02".into(),
            reason: Some("Q1 close".into()),
        };
        let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            freeze_reason(std::slice::from_ref(&f), d("2026-03-24")),
            None
        );
        for day in ["2026-03-25", "2026-03-30", "2026-04-02"] {
            let r = freeze_reason(std::slice::from_ref(&f), d(day)).unwrap();
            assert!(r.contains("Q1 close"), "{r}");
        }
        assert_eq!(freeze_reason(&[f], d("2026-04-03")), None);
        let r = suspend_reason(Path::new("t/.realign-suspend"), "  \n");
        assert!(r.ends_with("(no reason given)"), "{r}");
    }

    /// Fails the passes whose numbers are in `fail`; records when each ran.
    struct Scripted {
        start: Instant,
        fail: Vec<usize>,
        passes: Vec<(Trigger, Duration)>,
        reloads: Vec<Duration>,
        reload_says: bool,
    }

    impl Scripted {
        fn new(fail: Vec<usize>) -> Scripted {
            Scripted {
                start: Instant::now(),
                fail,
                passes: Vec::new(),
                reloads: Vec::new(),
                reload_says: true,
            }
        }
        fn times(&self) -> Vec<u64> {
            self.passes.iter().map(|(_, t)| t.as_secs()).collect()
        }
    }

    impl Reconciler for Scripted {
        async fn reload(&mut self) -> bool {
            self.reloads.push(self.start.elapsed());
            self.reload_says
        }
        async fn pass(&mut self, trigger: Trigger) -> Result<Outcome> {
            self.passes.push((trigger, self.start.elapsed()));
            if self.fail.contains(&self.passes.len()) {
                bail!("zoho is down");
            }
            Ok(Outcome {
                requeue_after: Duration::from_secs(60),
                ..Outcome::default()
            })
        }
    }

    /// Runs `drive` for `span` of (paused) time, then stops it.
    async fn run_for(r: &mut Scripted, span: Duration, events: Vec<Duration>, cap: Duration) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (stop_tx, mut stop_rx) = signal_watch::channel(false);
        let status = Status::new(Duration::from_secs(60));
        let timing = Timing {
            debounce: Duration::from_millis(500),
            backoff: Backoff::new(Duration::from_secs(1), cap),
        };
        let feeder = async move {
            let start = Instant::now();
            for at in events {
                tokio::time::sleep_until(start + at).await;
                tx.send(()).unwrap();
            }
            tokio::time::sleep_until(start + span).await;
            stop_tx.send(true).unwrap();
            // Keep the sender alive until the loop has seen `stop`.
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(tx);
        };
        tokio::join!(drive(r, timing, &mut rx, &mut stop_rx, &status), feeder);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_to_the_cap_and_reset_after_a_success() {
        let mut r = Scripted::new(vec![1, 2, 3, 4, 5, 6, 9]);
        run_for(
            &mut r,
            Duration::from_secs(250),
            vec![],
            Duration::from_secs(10),
        )
        .await;
        // Fails at 0, 1, 3, 7, 15, 25 (the cap of 10 s), succeeds at 35, resyncs at 95,
        // fails at 155, and the backoff starts over at 1 s after the success.
        assert_eq!(r.times(), [0, 1, 3, 7, 15, 25, 35, 95, 155, 156, 216]);
        assert_eq!(r.passes[0].0, Trigger::Start);
        assert!(r.passes[1..].iter().all(|(t, _)| *t == Trigger::Resync));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_file_events_is_one_reload_after_the_quiet_period() {
        let mut r = Scripted::new(vec![]);
        let ms = Duration::from_millis;
        let burst = vec![ms(10_000), ms(10_100), ms(10_300), ms(10_600)];
        run_for(
            &mut r,
            Duration::from_secs(30),
            burst,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(
            r.reloads,
            [ms(11_100)],
            "one reload, 500 ms after the last event"
        );
        let triggers: Vec<Trigger> = r.passes.iter().map(|(t, _)| *t).collect();
        assert_eq!(triggers, [Trigger::Start, Trigger::Spec]);
        assert_eq!(r.passes[1].1, ms(11_100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_that_finds_no_new_spec_runs_no_pass() {
        let mut r = Scripted::new(vec![]);
        r.reload_says = false;
        let events = vec![Duration::from_secs(5), Duration::from_secs(20)];
        run_for(
            &mut r,
            Duration::from_secs(50),
            events,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(r.reloads.len(), 2);
        assert_eq!(r.times(), [0], "only the start pass; the resync is at 60 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_of_events_cannot_hold_the_reload_off() {
        let mut r = Scripted::new(vec![]);
        let events = (0..100)
            .map(|i| Duration::from_millis(1_000 + 200 * i))
            .collect();
        run_for(
            &mut r,
            Duration::from_secs(30),
            events,
            Duration::from_secs(10),
        )
        .await;
        // The first reload comes 10 quiet periods (5 s) after the stream began.
        assert_eq!(r.reloads.first(), Some(&Duration::from_secs(6)));
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let s = Status::new(Duration::from_secs(60));
        s.record(&Ok(Outcome {
            applied: 7,
            drift: 2,
            ..Outcome::default()
        }));
        s.record(&Err(anyhow!("x")));
        let m = s.metrics();
        for line in [
            "realign_passes_total 2",
            "realign_pass_failures_total 1",
            "realign_changes_applied_total 7",
            "realign_drift_found_total 2",
            "realign_throttled_total 0",
            "realign_retries_total 0",
            "# TYPE realign_seconds_since_last_success gauge",
        ] {
            assert!(
                m.lines().any(|l| l == line || l.starts_with(line)),
                "{line}:\n{m}"
            );
        }
        assert!(s.health().is_ok());
    }
}
