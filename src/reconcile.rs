//! The steps of a reconcile pass, shared by `plan`, `apply`, `demo` and `watch`: read
//! the org, plan, apply, read back.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};

use crate::apply;
use crate::plan::{self, render, OrgState, Plan, PlanContext, Target as PlanTarget};
use crate::run::Exit;
use crate::spec::{self, Mode, Spec};
use crate::zoho::records::{self, ReadRequest};
use crate::zoho::Client;

pub fn read_request(spec: &Spec) -> (Vec<String>, Option<String>) {
    (spec.rule_fields(), spec.org.field.clone())
}

pub async fn fetch(client: &Client, spec: &Spec) -> Result<OrgState> {
    let (rule_fields, field) = read_request(spec);
    let req = ReadRequest {
        module: spec.org.module,
        territory_field: field.as_deref(),
        rule_fields: &rule_fields,
    };
    let started = Instant::now();
    let org = match spec.org.mode {
        Mode::Field => records::fetch_all(client, &req, read_progress(spec.org.module.as_str()))
            .await
            .with_context(|| format!("cannot read {} from Zoho", spec.org.module))?,
        Mode::Native => fetch_native(client, spec, &req).await?,
    };
    crate::say!(
        "read {} {} in {:.1} s",
        render::thousands(org.records.len() as u64),
        spec.org.module,
        started.elapsed().as_secs_f64()
    );
    Ok(org)
}

/// Progress while reading: a spinner with the count on a terminal, a plain line every
/// few seconds otherwise.
fn read_progress(module: &'static str) -> impl FnMut(usize) {
    let bar = std::io::stderr().is_terminal().then(|| {
        let b =
            indicatif::ProgressBar::new_spinner().with_finish(indicatif::ProgressFinish::AndClear);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} reading {msg}")
                .expect("valid template"),
        );
        b
    });
    let mut last = Instant::now();
    move |n| match &bar {
        Some(b) => {
            b.set_message(format!("{module}: {} records", render::thousands(n as u64)));
            b.tick();
        }
        None if last.elapsed().as_secs() >= 5 => {
            last = Instant::now();
            crate::say!(
                "reading {module}: {} records so far",
                render::thousands(n as u64)
            );
        }
        None => {}
    }
}

/// Native mode: the territory list, every record's memberships, and (where the list
/// read did not say) who assigned the memberships in declared territories.
async fn fetch_native(client: &Client, spec: &Spec, req: &ReadRequest<'_>) -> Result<OrgState> {
    let territories = records::fetch_territories(client)
        .await
        .context("cannot read the org's territories")?;
    let mut org = records::fetch_all_listed(client, req, None)
        .await
        .with_context(|| format!("cannot read {} from Zoho", spec.org.module))?;
    if let Ok(refs) = plan::native::resolve_territories(spec, &territories) {
        let declared: HashSet<spec::Id> = refs.into_iter().map(|r| r.id).collect();
        let asked =
            records::fill_unknown_ownership(client, req, &mut org, |m| declared.contains(&m.id))
                .await
                .context("cannot read who assigned the records' territories")?;
        if asked > 0 {
            crate::say!("asked {asked} records one by one who assigned their territories (the list read did not say)");
        }
    }
    org.territories = territories;
    Ok(org)
}

pub fn git_commit(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

pub fn make_plan(spec: &Spec, org: &OrgState, target: &PlanTarget) -> Result<Plan> {
    let ctx = PlanContext {
        target: target.clone(),
        git_commit: git_commit(&spec.root),
    };
    plan::diff(spec, org, &ctx).map_err(|diags| anyhow!("{}", spec::SpecError::Invalid(diags)))
}

/// Reads these records by the cheaper of a full read and id lookups (100 ids a call).
pub async fn read_back(
    client: &Client,
    spec: &Spec,
    records_total: usize,
    ids: &[spec::Id],
) -> Result<OrgState> {
    let (rule_fields, field) = read_request(spec);
    let req = ReadRequest {
        module: spec.org.module,
        territory_field: field.as_deref(),
        rule_fields: &rule_fields,
    };
    let id_pages = ids.len().div_ceil(100);
    let mut org = match spec.org.mode {
        Mode::Field if records_total.div_ceil(records::COQL_LIMIT).max(1) <= id_pages => {
            records::fetch_all(client, &req, |_| {}).await?
        }
        Mode::Field => records::fetch_ids(client, &req, ids).await?,
        Mode::Native if records_total.div_ceil(200).max(1) <= id_pages => {
            records::fetch_all_listed(client, &req, None).await?
        }
        Mode::Native => records::fetch_all_listed(client, &req, Some(ids)).await?,
    };
    let wanted: HashSet<&spec::Id> = ids.iter().collect();
    org.records.retain(|r| wanted.contains(&r.id));
    Ok(org)
}

/// Scheduled (202) changes finish in the background: re-read those records once a second
/// for up to 30 s until they hold what was planned. Never re-sends them.
async fn wait_for_jobs(
    client: &Client,
    spec: &Spec,
    plan: &Plan,
    report: &apply::Report,
    mut org: OrgState,
) -> Result<OrgState> {
    if report.pending.is_empty() {
        return Ok(org);
    }
    let want: HashMap<&spec::Id, Option<&str>> = plan
        .changes
        .iter()
        .map(|c| (&c.account_id, c.after.as_deref()))
        .collect();
    for _ in 0..30 {
        let waiting: Vec<spec::Id> = report
            .pending
            .iter()
            .map(|(id, _)| id)
            .filter(|id| {
                org.records.iter().find(|r| &r.id == *id).is_none_or(|r| {
                    held_value(plan, r).as_deref() != want.get(id).copied().flatten()
                })
            })
            .cloned()
            .collect();
        if waiting.is_empty() {
            break;
        }
        crate::say!("waiting for {} scheduled territory jobs ...", waiting.len());
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let fresh = read_back(client, spec, plan.summary.records as usize, &waiting).await?;
        for rec in fresh.records {
            if let Some(slot) = org.records.iter_mut().find(|r| r.id == rec.id) {
                *slot = rec;
            }
        }
    }
    Ok(org)
}

/// What a record holds, in the terms of `Change::after`: the field's value, or in native
/// mode its declared territories, joined.
pub fn held_value(plan: &Plan, rec: &plan::Record) -> Option<String> {
    match plan.mode {
        Mode::Field => rec
            .territory
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        Mode::Native => {
            let declared: HashSet<&spec::Id> = plan.declared.iter().map(|t| &t.id).collect();
            let names: std::collections::BTreeSet<&str> = rec
                .memberships
                .iter()
                .filter(|m| declared.contains(&m.id))
                .map(|m| m.name.as_str())
                .collect();
            (!names.is_empty()).then(|| names.into_iter().collect::<Vec<_>>().join(", "))
        }
    }
}

/// Reads the changed records back (the cheaper of a full read and id lookups) and
/// reports any whose value did not take, e.g. reverted by a workflow.
pub async fn verify(
    client: &Client,
    spec: &Spec,
    plan: &Plan,
    report: &apply::Report,
) -> Result<Vec<String>> {
    let mut check: Vec<spec::Id> = report.applied.clone();
    check.extend(report.pending.iter().map(|(id, _)| id.clone()));
    let org = read_back(client, spec, plan.summary.records as usize, &check)
        .await
        .context("cannot read the changed records back to verify them")?;
    let org = wait_for_jobs(client, spec, plan, report, org).await?;
    let now: HashMap<&spec::Id, Option<String>> = org
        .records
        .iter()
        .map(|r| (&r.id, held_value(plan, r)))
        .collect();
    let applied: HashSet<&spec::Id> = check.iter().collect();
    let mut missing = Vec::new();
    for c in plan
        .changes
        .iter()
        .filter(|c| applied.contains(&c.account_id))
    {
        let want = c.after.as_deref();
        match now.get(&c.account_id) {
            Some(v) if v.as_deref() == want => {}
            Some(v) => missing.push(format!(
                "{}: Zoho holds `{}`, not `{}` (reverted by a workflow or another integration?)",
                c.account_id,
                v.as_deref().unwrap_or("(none)"),
                want.unwrap_or("(none)")
            )),
            None => missing.push(format!("{}: the record is gone", c.account_id)),
        }
    }
    if missing.is_empty() {
        crate::say!(
            "verified: all {} changed records read back as planned",
            report.applied.len()
        );
    }
    for m in &missing {
        crate::say!("did not take: {m}");
    }
    Ok(missing)
}

pub async fn run_apply(client: Arc<Client>, plan: &Plan, spec: &Spec) -> Result<apply::Report> {
    run_apply_until(client, plan, spec, async {
        shutdown_signal().await;
        crate::say!("interrupted: finishing the batches in flight, sending no more");
    })
    .await
}

/// [`run_apply`] that stops launching batches when `stop` resolves instead of on a
/// signal, for `watch`, which owns the signals. The flag apply sets on a fatal error
/// stays private to this apply, so it cannot stop the caller.
pub async fn run_apply_until(
    client: Arc<Client>,
    plan: &Plan,
    spec: &Spec,
    stop_when: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<apply::Report> {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let watcher = tokio::spawn(async move {
        stop_when.await;
        stop2.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    note_unfinished_runs(Path::new(".realign/runs"));
    let started = Instant::now();
    let total_batches = plan.cost.write_calls;
    let report = apply::execute(
        client.clone(),
        plan,
        apply::Options {
            batch_size: plan.cost.batch_size.max(1) as usize,
            journal_dir: Some(PathBuf::from(".realign/runs")),
            stop,
            progress: progress_reporter("applying", plan.changes.len(), client.stats.clone()),
        },
    )
    .await
    .context("cannot write the apply journal in .realign/runs")?;
    watcher.abort();
    let mut report = report;
    settle_already_modified(&client, spec, plan, &mut report).await?;
    crate::say!(
        "applied {} of {} changes in {} write calls, {:.1} s ({} throttled, {} retried){}",
        report.applied.len(),
        plan.changes.len(),
        total_batches,
        started.elapsed().as_secs_f64(),
        client.stats.get(|s| &s.throttled),
        client.stats.get(|s| &s.retries),
        report
            .journal
            .as_ref()
            .map(|j| format!("; journal {}", j.display()))
            .unwrap_or_default()
    );
    Ok(report)
}

/// Says so when an earlier apply's journal has no `end`: that run was killed. Nothing
/// is lost (the plan was made from the org as it is now), but people should know.
fn note_unfinished_runs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    // Run ids sort by time: the newest journal is the previous run.
    let Some(last) = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .max()
    else {
        return;
    };
    let ended = std::fs::read_to_string(&last)
        .map(|t| t.lines().last().unwrap_or("").contains("\"event\":\"end\""))
        .unwrap_or(true);
    if !ended {
        crate::say!(
            "note: the previous apply ({}) stopped without finishing; this plan was made from the org as it is now, so what it left undone is included",
            last.display()
        );
    }
}

/// Records Zoho refused with `ALREADY_MODIFIED` (changed since realign read them) are
/// read back: one that holds the planned value was realign's own earlier attempt, whose
/// answer was lost (a retry after a dropped connection); the others were changed by
/// someone else and are left as they are, listed.
async fn settle_already_modified(
    client: &Client,
    spec: &Spec,
    plan: &Plan,
    report: &mut apply::Report,
) -> Result<()> {
    let ids: Vec<spec::Id> = report
        .failed
        .iter()
        .filter(|f| f.code == "ALREADY_MODIFIED")
        .map(|f| f.id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let now = read_back(client, spec, plan.summary.records as usize, &ids)
        .await
        .context("cannot re-read records Zoho said changed since they were read")?;
    let want: HashMap<&spec::Id, Option<&str>> = plan
        .changes
        .iter()
        .map(|c| (&c.account_id, c.after.as_deref()))
        .collect();
    let took: HashSet<spec::Id> = now
        .records
        .iter()
        .filter(|r| held_value(plan, r).as_deref() == want.get(&r.id).copied().flatten())
        .map(|r| r.id.clone())
        .collect();
    report.failed.retain_mut(|f| {
        if f.code != "ALREADY_MODIFIED" {
            return true;
        }
        if took.contains(&f.id) {
            return false;
        }
        f.message = "changed in Zoho since realign read it; left as it is (run `realign plan` to review it)".into();
        true
    });
    report.applied.extend(took);
    report.sort();
    Ok(())
}

/// Progress for long work: a bar on a terminal, a plain line every few seconds otherwise.
pub fn progress_reporter(
    what: &'static str,
    total: usize,
    stats: Arc<crate::zoho::ClientStats>,
) -> Box<dyn Fn(usize, usize) + Send + Sync> {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} records, eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(what);
        Box::new(move |done, _| {
            bar.set_position(done as u64);
            let throttled = stats.throttled.load(std::sync::atomic::Ordering::Relaxed);
            bar.set_message(format!("{what} ({throttled} throttled)"));
            if done >= total {
                bar.finish();
            }
        })
    } else {
        let last = std::sync::Mutex::new(Instant::now());
        let started = Instant::now();
        Box::new(move |done, total| {
            let mut last = last.lock().expect("progress lock");
            if done >= total || last.elapsed().as_secs() >= 5 {
                *last = Instant::now();
                let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
                let eta = (total - done.min(total)) as f64 / rate.max(0.001);
                crate::say!(
                    "{what}: {done}/{total} records, {} throttled, about {eta:.0} s left",
                    stats.throttled.load(std::sync::atomic::Ordering::Relaxed)
                );
            }
        })
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A failure message without the record's position in its batch (`"json_path":"$.data[93]
/// .Territory"`), so the same reason on many records reads as one.
fn without_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("\"json_path\":\"") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "\"json_path\":\"".len()..];
        match after.find('"') {
            Some(j) => {
                let tail = &after[j + 1..];
                rest = tail.strip_prefix(',').unwrap_or(tail);
            }
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

pub fn report_exit(report: &apply::Report, plan: &Plan) -> Exit {
    // One line per distinct reason, not per record: 186 records refused for the same
    // reason is one problem.
    let mut by_reason: std::collections::BTreeMap<(&str, String), Vec<&spec::Id>> =
        Default::default();
    for f in &report.failed {
        by_reason
            .entry((f.code.as_str(), without_positions(&f.message)))
            .or_default()
            .push(&f.id);
    }
    for ((code, message), ids) in by_reason {
        if ids.len() <= 3 {
            for id in ids {
                crate::say!("not changed: {id} `{code}` {message}");
            }
        } else {
            let all: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            crate::say!(
                "not changed: {} records `{code}` {message}: {}",
                ids.len(),
                all.join(", ")
            );
        }
    }
    if !report.pending.is_empty() {
        crate::say!(
            "scheduled: Zoho took {} records' changes as background jobs; they are not re-sent, and are checked when the jobs finish",
            report.pending.len()
        );
    }
    if !report.not_sent.is_empty() {
        crate::say!(
            "not sent: {} records (run `realign apply` again to finish; a re-plan finds them)",
            report.not_sent.len()
        );
    }
    if let Some(why) = &report.stopped {
        crate::say!("stopped: {why}");
        return Exit::Error;
    }
    if report.failed.is_empty() && report.not_sent.is_empty() {
        let _ = plan;
        Exit::Success
    } else {
        Exit::Partial
    }
}
