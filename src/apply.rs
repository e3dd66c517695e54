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
}

impl Report {
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

/// Applies every change of `plan`; the report lists what did not take and why.
pub async fn execute(
    client: Arc<Client>,
    plan: &Plan,
    opts: Options,
) -> Result<Report, std::io::Error> {
    let run_id = new_run_id();
    let (journal, journal_path) = Journal::open(opts.journal_dir.as_deref(), &run_id)?;
    let journal = Arc::new(journal);
    let field = plan.field.clone().unwrap_or_default();
    let module = plan.module;
    journal.write(json!({
        "event": "start", "run_id": run_id, "spec_digest": plan.spec.digest,
        "target": plan.target.api_domain, "changes": plan.changes.len(), "at": chrono::Utc::now().to_rfc3339(),
    }));

    let batch_size = opts.batch_size.clamp(1, records::UPDATE_MAX);
    let batches: Vec<Vec<(Id, Option<String>)>> = plan
        .changes
        .chunks(batch_size)
        .map(|c| {
            c.iter()
                .map(|ch| (ch.account_id.clone(), ch.after.clone()))
                .collect()
        })
        .collect();
    let total = plan.changes.len();
    // Launch no more batches than the pacer lets run, so an interrupt leaves few queued.
    let launch = Arc::new(Semaphore::new(client.pacer().limits().0.max(1)));
    let fatal: Arc<Mutex<Option<String>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress: Arc<dyn Fn(usize, usize) + Send + Sync> = Arc::from(opts.progress);
    let mut tasks = JoinSet::new();
    let mut report = Report {
        run_id: run_id.clone(),
        journal: journal_path,
        ..Report::default()
    };

    for (i, batch) in batches.into_iter().enumerate() {
        let permit = launch.clone().acquire_owned().await.expect("never closed");
        if opts.stop.load(Ordering::SeqCst) || fatal.lock().expect("lock").is_some() {
            report.not_sent.extend(batch.into_iter().map(|(id, _)| id));
            continue;
        }
        let (client, journal, field, fatal, done, progress) = (
            client.clone(),
            journal.clone(),
            field.clone(),
            fatal.clone(),
            done.clone(),
            progress.clone(),
        );
        let stop = opts.stop.clone();
        tasks.spawn(async move {
            let _permit = permit;
            journal.write(json!({
                "event": "batch", "batch": i,
                "ids": batch.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
                "values": batch.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
            }));
            let result = records::update(&client, module, &field, &batch).await;
            let outcomes: Vec<Result<(), Failure>> = match result {
                Ok(outs) => batch
                    .iter()
                    .zip(outs)
                    .map(|((id, _), o)| match o {
                        Outcome::Updated { .. } => Ok(()),
                        Outcome::Failed { code, message } => Err(Failure { id: id.clone(), code, message }),
                    })
                    .collect(),
                Err(e) => {
                    let (code, message) = match &e {
                        ZohoError::Api { code, message, .. } => (code.clone(), message.clone()),
                        ZohoError::GaveUp { .. } => ("GAVE_UP".to_string(), e.to_string()),
                        _ => ("NOT_APPLIED".to_string(), e.to_string()),
                    };
                    if !matches!(e, ZohoError::Api { .. } | ZohoError::GaveUp { .. } | ZohoError::Garbage { .. }) {
                        // Credentials or a wait beyond the cap: no later batch can do better.
                        fatal.lock().expect("lock").get_or_insert_with(|| e.to_string());
                        stop.store(true, Ordering::SeqCst);
                    }
                    batch
                        .iter()
                        .map(|(id, _)| Err(Failure { id: id.clone(), code: code.clone(), message: message.clone() }))
                        .collect()
                }
            };
            for ((id, _), o) in batch.iter().zip(&outcomes) {
                match o {
                    Ok(()) => journal.write(json!({"event": "result", "batch": i, "id": id.as_str(), "status": "updated"})),
                    Err(f) => journal.write(json!({
                        "event": "result", "batch": i, "id": id.as_str(), "status": "failed", "code": f.code, "message": f.message,
                    })),
                }
            }
            let n = done.fetch_add(batch.len(), Ordering::Relaxed) + batch.len();
            progress(n, total);
            (batch, outcomes)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (batch, outcomes) = joined.expect("apply task panicked");
        for ((id, _), o) in batch.into_iter().zip(outcomes) {
            match o {
                Ok(()) => report.applied.push(id),
                Err(f) => report.failed.push(f),
            }
        }
    }
    report
        .applied
        .sort_by(|a, b| a.numeric_key().cmp(&b.numeric_key()));
    report
        .failed
        .sort_by(|a, b| a.id.numeric_key().cmp(&b.id.numeric_key()));
    report.stopped = fatal.lock().expect("lock").take().or_else(|| {
        opts.stop.load(Ordering::SeqCst).then(|| {
            "interrupted: batches in flight were finished, the rest were not sent".to_string()
        })
    });
    journal.write(json!({
        "event": "end", "applied": report.applied.len(), "failed": report.failed.len(),
        "not_sent": report.not_sent.len(), "stopped": report.stopped, "at": chrono::Utc::now().to_rfc3339(),
    }));
    Ok(report)
}
