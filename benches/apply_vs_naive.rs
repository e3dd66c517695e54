//! The weekly realignment four ways, on the same sandbox org, with 150 ms per call: the
//! naive loop (one `PUT /Accounts/{id}` per account, one after another, no retry), the
//! same loop 25 calls at a time (how people make it faster), that loop with a fixed sleep
//! between calls, and realign (read, plan, batched apply, read-back verification). Each runs alone, beside a
//! noisy neighbour holding half the concurrency, and under a fault mix (20% 429, 5% 5xx,
//! 1% connection resets). Prints a markdown table; `cargo bench --bench apply_vs_naive`.
//!
//! `REALIGN_BENCH_SCENARIOS=alone,faults` picks scenarios; `REALIGN_BENCH_LATENCY_MS`
//! changes the latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use realign::edition::Edition;
use realign::plan::{self, Change, Target};
use realign::reconcile;
use realign::sandbox::{self, Faults, SandboxConfig, SandboxHandle};
use realign::spec::{self, Spec};
use realign::zoho::{Client, Connection, Secret};
use serde_json::json;

const EDITION: Edition = Edition::Enterprise;
const NAIVE_WORKERS: usize = 25;
const SLEEP: Duration = Duration::from_millis(100);

struct Row {
    scenario: &'static str,
    method: &'static str,
    calls: u64,
    throttled: u64,
    credits: u64,
    wall: Duration,
    lost: usize,
}

fn connection(sb: &SandboxHandle) -> Connection {
    Connection {
        client_id: sandbox::CLIENT_ID.into(),
        client_secret: Secret::new(sandbox::CLIENT_SECRET),
        refresh_token: Secret::new(sandbox::REFRESH_TOKEN),
        accounts_url: sb.base_url(),
        api_domain: Some(sb.base_url()),
        dc: "sandbox".into(),
    }
}

/// Reads the org and plans, as `realign plan` does.
async fn read_and_plan(
    client: &Client,
    spec: &Spec,
    sb: &SandboxHandle,
) -> anyhow::Result<plan::Plan> {
    let org = reconcile::fetch(client, spec).await?;
    let target = Target {
        api_domain: sb.base_url(),
        org: None,
        sandbox: true,
    };
    reconcile::make_plan(spec, &org, &target)
}

async fn plan_against(spec: &Spec, sb: &SandboxHandle) -> plan::Plan {
    let client = Client::new(connection(sb), EDITION, None).expect("client");
    read_and_plan(&client, spec, sb).await.expect("plan")
}

/// One PUT per account, as people write it; a failed call is a lost record.
async fn naive(sb: &SandboxHandle, changes: &[Change], workers: usize, sleep: Duration) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = sb.base_url();
    let tok = Arc::new(sb.access_token().await.expect("a token"));
    let queue = Arc::new(std::sync::Mutex::new(changes.to_vec()));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (http, base, tok, queue) = (http.clone(), base.clone(), tok.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(c) = queue.lock().unwrap().pop() else {
                    break;
                };
                let body = json!({"data": [{"Territory": c.after}]});
                let _ = http
                    .put(format!("{base}/crm/v8/Accounts/{}", c.account_id))
                    .header("Authorization", format!("Zoho-oauthtoken {tok}"))
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status());
                if !sleep.is_zero() {
                    tokio::time::sleep(sleep).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// What `realign apply` does: read, plan, batched apply (journaled), read-back.
async fn realign_apply(spec: &Spec, sb: &SandboxHandle) {
    let client = Arc::new(Client::new(connection(sb), EDITION, None).expect("client"));
    let plan = match read_and_plan(&client, spec, sb).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("realign read failed: {e:#}");
            return;
        }
    };
    let report =
        match reconcile::run_apply_until(client.clone(), &plan, spec, std::future::pending()).await
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("realign apply failed: {e:#}");
                return;
            }
        };
    if !report.complete() {
        eprintln!(
            "realign: {} failed, {} not sent, stopped: {:?}",
            report.failed.len(),
            report.not_sent.len(),
            report.stopped
        );
    }
    if let Err(e) = reconcile::verify(&client, spec, &plan, &report).await {
        eprintln!("realign verification read failed: {e:#}");
    }
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("territories");
    let spec = spec::load_dir(&root).expect("the example spec loads");
    let latency: u64 = std::env::var("REALIGN_BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let wanted = std::env::var("REALIGN_BENCH_SCENARIOS")
        .unwrap_or_else(|_| "alone,neighbour,faults".into());
    let base = Faults {
        latency_ms: latency,
        ..Faults::default()
    };
    let scenarios: Vec<(&'static str, Faults)> = vec![
        ("alone", base.clone()),
        (
            "neighbour",
            Faults {
                neighbour_concurrency: EDITION.concurrency() / 2,
                neighbour_credits_per_min: 500,
                ..base.clone()
            },
        ),
        (
            "faults",
            Faults {
                seed: 7,
                throttle_rate: 0.20,
                error_rate: 0.05,
                reset_rate: 0.01,
                ..base.clone()
            },
        ),
    ];

    // The changes the naive loops send: the same ones realign plans, from a clean org.
    let clean = sandbox::start(SandboxConfig {
        edition: EDITION,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let reference = plan_against(&spec, &clean).await;
    clean.shutdown().await.unwrap();
    let changes = reference.changes.clone();
    eprintln!(
        "{} changes over {} accounts, {EDITION} edition, {latency} ms per call",
        changes.len(),
        reference.summary.records
    );

    let mut rows = Vec::new();
    for (name, faults) in scenarios {
        if !wanted.split(',').any(|w| w.trim() == name) {
            continue;
        }
        for method in [
            "naive loop",
            "naive loop, 25 at a time",
            "loop + sleep",
            "realign",
        ] {
            let sb = sandbox::start(SandboxConfig {
                edition: EDITION,
                faults: faults.clone(),
                ..SandboxConfig::default()
            })
            .await
            .unwrap();
            eprintln!("{name}: {method} ...");
            let started = Instant::now();
            match method {
                "naive loop" => naive(&sb, &changes, 1, Duration::ZERO).await,
                "naive loop, 25 at a time" => {
                    naive(&sb, &changes, NAIVE_WORKERS, Duration::ZERO).await
                }
                "loop + sleep" => naive(&sb, &changes, 1, SLEEP).await,
                _ => realign_apply(&spec, &sb).await,
            }
            let wall = started.elapsed();
            let stats = sb.stats().await;
            // Count what is still wrong with faults off: records lost by the method.
            let http = reqwest::Client::new();
            let _ = http
                .post(format!("{}/__sandbox/faults", sb.base_url()))
                .json(&json!({}))
                .send()
                .await;
            let after = plan_against(&spec, &sb).await;
            let token_calls: u64 = stats
                .by_endpoint
                .iter()
                .filter(|(k, _)| k.contains("/oauth/"))
                .map(|(_, v)| *v)
                .sum();
            rows.push(Row {
                scenario: name,
                method,
                calls: stats.requests - token_calls,
                throttled: stats.throttled,
                credits: stats.credits_used,
                wall,
                lost: after.changes.len(),
            });
            sb.shutdown().await.unwrap();
        }
    }

    println!("| scenario | method | API calls | 429s | credits | wall time | records lost |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.1} s | {} |",
            r.scenario,
            r.method,
            r.calls,
            r.throttled,
            r.credits,
            r.wall.as_secs_f64(),
            r.lost
        );
    }
    for name in ["alone", "neighbour", "faults"] {
        let naive = rows
            .iter()
            .find(|r| r.scenario == name && r.method == "naive loop");
        let ours = rows
            .iter()
            .find(|r| r.scenario == name && r.method == "realign");
        if let (Some(n), Some(o)) = (naive, ours) {
            println!(
                "\n{name}: realign took {:.1}% of the naive loop's wall time, with {} calls instead of {}",
                100.0 * o.wall.as_secs_f64() / n.wall.as_secs_f64().max(1e-9),
                o.calls,
                n.calls
            );
        }
    }
    let minimum = reference.cost.read_calls + reference.cost.write_calls;
    println!(
        "\nfewest calls for this change: {minimum} ({} reads + {} writes); realign also reads the {} accounts back once to verify ({} calls)",
        reference.cost.read_calls,
        reference.cost.write_calls,
        reference.summary.records,
        reference.cost.read_calls
    );
    if let Some(mib) = peak_rss_mib() {
        println!("peak memory of the benchmark process (sandbox included): {mib:.0} MiB");
    }
}
