//! Executes a plan through the Zoho client, batch by batch, journaled.
//!
//! Batches go out concurrently, as many as the pacer lets through. Every batch is
//! written to the journal before it is sent and every record's outcome after, flushed
//! as it goes, so a killed run leaves a record of what may have been sent. Nothing is
//! lost by a kill: writes are idempotent and the next plan re-reads the org.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::plan::Plan;
use crate::spec::Id;
use crate::zoho::records::{self, Outcome};
use crate::zoho::{Client, ZohoError};

/// A record Zoho did not change, with Zoho's code and message.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub id: Id,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub run_id: String,
    pub journal: Option<PathBuf>,
    pub applied: Vec<Id>,
    pub failed: Vec<Failure>,
    /// Records never sent because the run stopped (interrupt or fatal error).
    pub not_sent: Vec<Id>,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// Native mode: records whose change Zoho accepted as a background job (202
    /// `SCHEDULED`), with the job id; never re-sent while pending, verified later.
    pub pending: Vec<(Id, Option<String>)>,
}

impl Report {
    /// Every list in record-id order, so reports and logs read the same run to run.
    pub fn sort(&mut self) {
        self.applied
            .sort_by(|a, b| a.numeric_key().cmp(&b.numeric_key()));
        self.failed
            .sort_by(|a, b| a.id.numeric_key().cmp(&b.id.numeric_key()));
        self.not_sent
            .sort_by(|a, b| a.numeric_key().cmp(&b.numeric_key()));
        self.pending
            .sort_by(|a, b| a.0.numeric_key().cmp(&b.0.numeric_key()));
    }

    pub fn complete(&self) -> bool {
        self.failed.is_empty() && self.not_sent.is_empty() && self.stopped.is_none()
    }
}

pub struct Options {
    pub batch_size: usize,
    /// Directory for `<run-id>.jsonl` journals (`.realign/runs`); None writes none.
    pub journal_dir: Option<PathBuf>,
    /// Set to stop launching batches (Ctrl-C); batches in flight finish.
    pub stop: Arc<AtomicBool>,
    /// Called with (records done, records total) as batches finish.
    pub progress: Box<dyn Fn(usize, usize) + Send + Sync>,
}

struct Journal(Option<Mutex<File>>);

impl Journal {
    fn open(dir: Option<&Path>, run_id: &str) -> std::io::Result<(Journal, Option<PathBuf>)> {
        let Some(dir) = dir else {
            return Ok((Journal(None), None));
        };
        fs::create_dir_all(dir)?;
        let path = dir.join(format!("{run_id}.jsonl"));
        let file = File::create(&path)?;
        Ok((Journal(Some(Mutex::new(file))), Some(path)))
    }

    fn write(&self, event: serde_json::Value) {
        if let Some(f) = &self.0 {
            let mut f = f.lock().expect("journal lock");
            // A journal that cannot be written must not stop the apply; say so once.
            if writeln!(f, "{event}").and_then(|_| f.flush()).is_err() {
                tracing::warn!("cannot write the apply journal");
            }
        }
    }
}

/// A run id that sorts by time: `20261203T105212Z-1a2b`.
pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    format!(
        "{}-{:04x}",
        now.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    )
}

/// Per-record codes worth another try in the same run: the record or the server was
/// busy, not the change wrong.
pub const TRANSIENT_CODES: [&str; 4] = [
    "INTERNAL_ERROR",
    "INTERNAL_SERVER_ERROR",
    "TOO_MANY_REQUESTS",
    "RECORD_LOCKED",
];

/// Rounds of per-record retries after the first pass.
const RETRY_ROUNDS: usize = 2;

type Batch = Vec<(Id, Option<String>)>;

/// Shared by the batch tasks of one run.
struct Run {
    /// Each record's `Modified_Time` when it was planned (field mode).
    planned_at: std::collections::HashMap<Id, String>,
    client: Arc<Client>,
    journal: Journal,
    module: crate::spec::Module,
    field: String,
    stop: Arc<AtomicBool>,
    fatal: Mutex<Option<String>>,
    done: std::sync::atomic::AtomicUsize,
    total: usize,
    progress: Box<dyn Fn(usize, usize) + Send + Sync>,
}

impl Run {
    /// The newest `Modified_Time` the batch's records were planned against, when every
    /// record has one: a record changed after it was read is then refused by Zoho.
    fn newest_planned(&self, batch: &Batch) -> Option<String> {
        let mut newest: Option<chrono::DateTime<chrono::FixedOffset>> = None;
        for (id, _) in batch {
            let t = chrono::DateTime::parse_from_rfc3339(self.planned_at.get(id)?).ok()?;
            newest = Some(newest.map_or(t, |n| n.max(t)));
        }
        newest.map(|t| t.to_rfc3339())
    }

    /// The code and message a whole failed batch gives each of its records. Errors no
    /// later batch can get past (credentials, a wait beyond the cap) also stop the run.
    fn batch_failed(&self, e: &ZohoError) -> (String, String) {
        let (code, message) = match e {
            ZohoError::Api { code, message, .. } => (code.clone(), message.clone()),
            ZohoError::GaveUp { .. } => ("GAVE_UP".to_string(), e.to_string()),
            _ => ("NOT_APPLIED".to_string(), e.to_string()),
        };
        if !matches!(
            e,
            ZohoError::Api { .. } | ZohoError::GaveUp { .. } | ZohoError::Garbage { .. }
        ) {
            self.fatal
                .lock()
                .expect("lock")
                .get_or_insert_with(|| e.to_string());
            self.stop.store(true, Ordering::SeqCst);
        }
        (code, message)
    }
}

/// Credits a write of `n` records costs (1 per 10 records, reference §8.1).
fn write_credits(n: usize) -> u64 {
    n.div_ceil(10) as u64
}

/// Applies every change of `plan`; the report lists what did not take and why.
pub async fn execute(
    client: Arc<Client>,
    plan: &Plan,
    opts: Options,
) -> Result<Report, std::io::Error> {
    if plan.mode == crate::spec::Mode::Native {
        return execute_native(client, plan, opts).await;
    }
    let run_id = new_run_id();
    let (journal, journal_path) = Journal::open(opts.journal_dir.as_deref(), &run_id)?;
    journal.write(json!({
        "event": "start", "run_id": run_id, "spec_digest": plan.spec.digest,
        "target": plan.target.api_domain, "changes": plan.changes.len(), "at": chrono::Utc::now().to_rfc3339(),
    }));
    let run = Arc::new(Run {
        planned_at: plan
            .changes
            .iter()
            .filter_map(|c| Some((c.account_id.clone(), c.before.modified_time.clone()?)))
            .collect(),
        client,
        journal,
        module: plan.module,
        field: plan.field.clone().unwrap_or_default(),
        stop: opts.stop.clone(),
        fatal: Mutex::new(None),
        done: Default::default(),
        total: plan.changes.len(),
        progress: opts.progress,
    });
    let batch_size = opts.batch_size.clamp(1, records::UPDATE_MAX);
    let mut report = Report {
        run_id,
        journal: journal_path,
        ..Report::default()
    };
    let mut pending: Batch = plan
        .changes
        .iter()
        .map(|c| (c.account_id.clone(), c.after.clone()))
        .collect();
    for round in 0..=RETRY_ROUNDS {
        let values: std::collections::HashMap<Id, Option<String>> =
            pending.iter().cloned().collect();
        let (applied, failed, not_sent) = send_round(&run, &pending, batch_size, round).await;
        report.applied.extend(applied);
        report.not_sent.extend(not_sent);
        let (again, permanent): (Vec<Failure>, Vec<Failure>) = failed
            .into_iter()
            .partition(|f| TRANSIENT_CODES.contains(&f.code.as_str()));
        report.failed.extend(permanent);
        if again.is_empty() {
            break;
        }
        let stopped = run.stop.load(Ordering::SeqCst) || run.fatal.lock().expect("lock").is_some();
        if round == RETRY_ROUNDS || stopped {
            report.failed.extend(again);
            break;
        }
        tracing::info!(
            records = again.len(),
            round = round + 1,
            "retrying records Zoho reported as busy"
        );
        pending = again
            .into_iter()
            .map(|f| {
                let v = values[&f.id].clone();
                (f.id, v)
            })
            .collect();
    }
    report.sort();
    report.stopped = run.fatal.lock().expect("lock").take().or_else(|| {
        opts.stop.load(Ordering::SeqCst).then(|| {
            "interrupted: batches in flight were finished, the rest were not sent".to_string()
        })
    });
    run.journal.write(json!({
        "event": "end", "applied": report.applied.len(), "failed": report.failed.len(),
        "not_sent": report.not_sent.len(), "stopped": report.stopped, "at": chrono::Utc::now().to_rfc3339(),
    }));
    Ok(report)
}

/// One pass over `pending` in batches; returns (applied, failed, not sent).
async fn send_round(
    run: &Arc<Run>,
    pending: &[(Id, Option<String>)],
    batch_size: usize,
    round: usize,
) -> (Vec<Id>, Vec<Failure>, Vec<Id>) {
    let batches: Vec<Batch> = pending.chunks(batch_size).map(<[_]>::to_vec).collect();
    // Credits the batches not yet launched will need.
    let mut credits_left: u64 = batches.iter().map(|b| write_credits(b.len())).sum();
    // Launch no more batches than the pacer lets run, so an interrupt leaves few queued.
    let launch = Arc::new(Semaphore::new(run.client.pacer().limits().0.max(1)));
    let mut tasks = JoinSet::new();
    let mut not_sent = Vec::new();
    for (i, batch) in batches.into_iter().enumerate() {
        let permit = launch.clone().acquire_owned().await.expect("never closed");
        if run.stop.load(Ordering::SeqCst) || run.fatal.lock().expect("lock").is_some() {
            not_sent.extend(batch.into_iter().map(|(id, _)| id));
            continue;
        }
        if let Err(msg) =
            crate::zoho::ratelimit::check_budget(credits_left, run.client.credits_remaining())
        {
            run.fatal
                .lock()
                .expect("lock")
                .get_or_insert(format!("stopped between batches: {msg}"));
            not_sent.extend(batch.into_iter().map(|(id, _)| id));
            continue;
        }
        credits_left -= write_credits(batch.len());
        let run = run.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let outcomes = send_batch(&run, &batch, round, i).await;
            (batch, outcomes)
        });
    }
    let (mut applied, mut failed) = (Vec::new(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        let (batch, outcomes) = joined.expect("apply task panicked");
        for ((id, _), o) in batch.into_iter().zip(outcomes) {
            match o {
                Ok(()) => applied.push(id),
                Err(f) => failed.push(f),
            }
        }
    }
    (applied, failed, not_sent)
}

async fn send_batch(run: &Run, batch: &Batch, round: usize, i: usize) -> Vec<Result<(), Failure>> {
    run.journal.write(json!({
        "event": "batch", "round": round, "batch": i,
        "ids": batch.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        "values": batch.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
    }));
    let outcomes: Vec<Result<(), Failure>> = match records::update(
        &run.client,
        run.module,
        &run.field,
        batch,
        run.newest_planned(batch).as_deref(),
    )
    .await
    {
        Ok(outs) => batch
            .iter()
            .zip(outs)
            .map(|((id, _), o)| match o {
                Outcome::Updated { .. } => Ok(()),
                Outcome::Failed { code, message } => Err(Failure {
                    id: id.clone(),
                    code,
                    message,
                }),
            })
            .collect(),
        Err(e) => {
            let (code, message) = run.batch_failed(&e);
            batch
                .iter()
                .map(|(id, _)| {
                    Err(Failure {
                        id: id.clone(),
                        code: code.clone(),
                        message: message.clone(),
                    })
                })
                .collect()
        }
    };
    for ((id, _), o) in batch.iter().zip(&outcomes) {
        match o {
            Ok(()) => run.journal.write(json!({"event": "result", "batch": i, "id": id.as_str(), "status": "updated"})),
            Err(f) => run.journal.write(json!({
                "event": "result", "batch": i, "id": id.as_str(), "status": "failed", "code": f.code, "message": f.message,
            })),
        }
    }
    let n = run.done.fetch_add(batch.len(), Ordering::Relaxed) + batch.len();
    (run.progress)(n.min(run.total), run.total);
    outcomes
}

/// One assign or remove step of one record, in native mode.
#[derive(Clone)]
struct Step {
    id: Id,
    territories: Vec<Id>,
}

/// Where one record stands during a native apply.
#[derive(Default)]
struct RecordState {
    failed: Option<Failure>,
    pending: Option<Option<String>>,
    not_sent: bool,
}

/// Native mode: assigns, then removes (records at Zoho's membership cap remove first, so
/// the assign has room). A record whose assign failed or is still a pending job keeps its
/// old membership: removing it would leave the record in no territory.
async fn execute_native(
    client: Arc<Client>,
    plan: &Plan,
    opts: Options,
) -> Result<Report, std::io::Error> {
    let run_id = new_run_id();
    let (journal, journal_path) = Journal::open(opts.journal_dir.as_deref(), &run_id)?;
    journal.write(json!({
        "event": "start", "run_id": run_id, "spec_digest": plan.spec.digest, "mode": "native",
        "target": plan.target.api_domain, "changes": plan.changes.len(), "at": chrono::Utc::now().to_rfc3339(),
    }));
    let run = Arc::new(Run {
        planned_at: Default::default(),
        client,
        journal,
        module: plan.module,
        field: String::new(),
        stop: opts.stop.clone(),
        fatal: Mutex::new(None),
        done: Default::default(),
        total: plan.changes.len(),
        progress: opts.progress,
    });
    let cap = crate::plan::native::membership_cap(plan.module);
    let tight = |c: &&crate::plan::Change| c.before.territories.len() + c.assign.len() > cap;
    let step = |c: &crate::plan::Change, list: &[crate::plan::TerritoryRef]| Step {
        id: c.account_id.clone(),
        territories: list.iter().map(|t| t.id.clone()).collect(),
    };
    let mut state: std::collections::HashMap<Id, RecordState> = plan
        .changes
        .iter()
        .map(|c| (c.account_id.clone(), RecordState::default()))
        .collect();
    let removes_first: Vec<Step> = plan
        .changes
        .iter()
        .filter(|c| !c.remove.is_empty())
        .filter(tight)
        .map(|c| step(c, &c.remove))
        .collect();
    let assigns: Vec<Step> = plan
        .changes
        .iter()
        .filter(|c| !c.assign.is_empty())
        .map(|c| step(c, &c.assign))
        .collect();
    let removes_after: Vec<Step> = plan
        .changes
        .iter()
        .filter(|c| !c.remove.is_empty())
        .filter(|c| !tight(c))
        .map(|c| step(c, &c.remove))
        .collect();
    let live =
        |state: &std::collections::HashMap<Id, RecordState>, steps: Vec<Step>| -> Vec<Step> {
            // Records already failed or pending are skipped: never re-sent while pending.
            steps
                .into_iter()
                .filter(|s| {
                    state
                        .get(&s.id)
                        .is_some_and(|r| r.failed.is_none() && r.pending.is_none() && !r.not_sent)
                })
                .collect()
        };
    let first = live(&state, removes_first);
    native_phase(&run, true, first, &mut state).await;
    let assign_steps = live(&state, assigns);
    native_phase(&run, false, assign_steps.clone(), &mut state).await;
    // A move whose assign Zoho scheduled waits for that job before its remove, so the
    // record is never left in no territory.
    let waiting: Vec<&Step> = assign_steps
        .iter()
        .filter(|s| state.get(&s.id).is_some_and(|r| r.pending.is_some()))
        .filter(|s| removes_after.iter().any(|r| r.id == s.id))
        .collect();
    if !waiting.is_empty() {
        wait_for_assigns(&run, &waiting, &mut state).await;
    }
    let after = live(&state, removes_after);
    native_phase(&run, true, after, &mut state).await;
    let mut report = Report {
        run_id,
        journal: journal_path,
        ..Report::default()
    };
    for c in &plan.changes {
        let st = state.remove(&c.account_id).unwrap_or_default();
        if let Some(f) = st.failed {
            report.failed.push(f);
        } else if let Some(job) = st.pending {
            report.pending.push((c.account_id.clone(), job));
        } else if st.not_sent {
            report.not_sent.push(c.account_id.clone());
        } else {
            report.applied.push(c.account_id.clone());
        }
    }
    report.sort();
    report.stopped = run.fatal.lock().expect("lock").take().or_else(|| {
        opts.stop.load(Ordering::SeqCst).then(|| {
            "interrupted: batches in flight were finished, the rest were not sent".to_string()
        })
    });
    run.journal.write(json!({
        "event": "end", "applied": report.applied.len(), "failed": report.failed.len(), "pending": report.pending.len(),
        "not_sent": report.not_sent.len(), "stopped": report.stopped, "at": chrono::Utc::now().to_rfc3339(),
    }));
    Ok(report)
}

/// Re-reads records whose assign is a pending job, once a second for up to 30 s, and
/// clears the pending mark of those that now hold what was assigned.
async fn wait_for_assigns(
    run: &Arc<Run>,
    waiting: &[&Step],
    state: &mut std::collections::HashMap<Id, RecordState>,
) {
    let req = records::ReadRequest {
        module: run.module,
        territory_field: None,
        rule_fields: &[],
    };
    let mut left: Vec<&Step> = waiting.to_vec();
    for _ in 0..30 {
        if left.is_empty() || run.stop.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let ids: Vec<Id> = left.iter().map(|s| s.id.clone()).collect();
        let Ok(now) = records::fetch_all_listed(&run.client, &req, Some(&ids)).await else {
            continue;
        };
        left.retain(|s| {
            let held = now.records.iter().find(|r| r.id == s.id).is_some_and(|r| {
                s.territories
                    .iter()
                    .all(|t| r.memberships.iter().any(|m| &m.id == t))
            });
            if held {
                if let Some(r) = state.get_mut(&s.id) {
                    r.pending = None;
                }
                run.journal
                    .write(json!({"event": "job_done", "op": "assign", "id": s.id.as_str()}));
            }
            !held
        });
    }
}

/// One phase (all assigns, or all removes) in batches of 10, with busy records retried.
async fn native_phase(
    run: &Arc<Run>,
    remove: bool,
    mut steps: Vec<Step>,
    state: &mut std::collections::HashMap<Id, RecordState>,
) {
    let op = if remove { "remove" } else { "assign" };
    for round in 0..=RETRY_ROUNDS {
        if steps.is_empty() {
            return;
        }
        let launch = Arc::new(Semaphore::new(run.client.pacer().limits().0.max(1)));
        let mut tasks = JoinSet::new();
        for (i, batch) in steps
            .chunks(crate::plan::native::ACTION_BATCH_MAX)
            .map(<[Step]>::to_vec)
            .enumerate()
        {
            let permit = launch.clone().acquire_owned().await.expect("never closed");
            if run.stop.load(Ordering::SeqCst) || run.fatal.lock().expect("lock").is_some() {
                for s in batch {
                    if let Some(r) = state.get_mut(&s.id) {
                        r.not_sent = true;
                    }
                }
                continue;
            }
            let run = run.clone();
            tasks.spawn(async move {
                let _permit = permit;
                run.journal.write(json!({
                    "event": "batch", "op": op, "round": round, "batch": i,
                    "ids": batch.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
                    "territories": batch.iter().map(|s| s.territories.iter().map(Id::as_str).collect::<Vec<_>>()).collect::<Vec<_>>(),
                }));
                let pairs: Vec<(Id, Vec<Id>)> = batch.iter().map(|s| (s.id.clone(), s.territories.clone())).collect();
                let result = records::territory_action(&run.client, run.module, remove, &pairs).await;
                let outcomes: Vec<records::ActionOutcome> = match result {
                    Ok(o) => o,
                    Err(e) => {
                        let (code, message) = run.batch_failed(&e);
                        vec![records::ActionOutcome::Failed { code, message }; batch.len()]
                    }
                };
                for (s, o) in batch.iter().zip(&outcomes) {
                    run.journal.write(json!({"event": "result", "op": op, "batch": i, "id": s.id.as_str(), "outcome": format!("{o:?}")}));
                }
                (batch, outcomes)
            });
        }
        let mut again = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (batch, outcomes) = joined.expect("apply task panicked");
            for (s, o) in batch.into_iter().zip(outcomes) {
                let Some(r) = state.get_mut(&s.id) else {
                    continue;
                };
                match o {
                    records::ActionOutcome::Done | records::ActionOutcome::Converged => {}
                    records::ActionOutcome::Scheduled { job_id } => r.pending = Some(job_id),
                    records::ActionOutcome::HeldByRule { message } => {
                        r.failed = Some(Failure {
                            id: s.id.clone(),
                            code: "NOT_ALLOWED".into(),
                            message: format!(
                                "held by a Zoho territory rule, left as it is: {message}"
                            ),
                        })
                    }
                    records::ActionOutcome::Failed { code, message } => {
                        if TRANSIENT_CODES.contains(&code.as_str()) && round < RETRY_ROUNDS {
                            again.push(s);
                        } else {
                            r.failed = Some(Failure {
                                id: s.id.clone(),
                                code,
                                message,
                            });
                        }
                    }
                }
            }
        }
        let n = run.done.load(Ordering::Relaxed);
        (run.progress)(n, run.total);
        steps = again;
    }
}
