//! Requests per second the sandbox serves for small API calls, latency off, with a
//! client keeping some calls in flight (under the enterprise gate of 20).
//!
//! Prints figures; it does not pass or fail on them. Run with
//! `cargo bench --bench sandbox_throughput`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use realign::sandbox::{self, SandboxConfig};

const IN_FLIGHT: usize = 16;

/// Runs `IN_FLIGHT` workers for `duration`; each calls `path(n)` in a loop.
async fn measure(
    label: &str,
    duration: Duration,
    path: impl Fn(u64) -> String + Send + Sync + 'static,
) {
    let handle = sandbox::start(SandboxConfig {
        daily_credits: Some(u64::MAX / 2),
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts");
    let base = handle.base_url();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .expect("client");
    let auth = format!(
        "Zoho-oauthtoken {}",
        handle.access_token().await.expect("a token")
    );
    let path = Arc::new(path);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let workers: Vec<_> = (0..IN_FLIGHT as u64)
        .map(|w| {
            let (http, base, auth, path) =
                (http.clone(), base.clone(), auth.clone(), Arc::clone(&path));
            let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
            tokio::spawn(async move {
                let mut n = w;
                while Instant::now() < deadline {
                    let resp = http
                        .get(format!("{base}{}", path(n)))
                        .header("Authorization", &auth)
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    n += IN_FLIGHT as u64;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = handle.stats().await;
    let ok = done.load(Ordering::Relaxed);
    println!(
        "{label:<40} {:>8.0} req/s  ({ok} ok, {} failed, {} throttled, peak {} in flight, {elapsed:.1} s)",
        ok as f64 / elapsed,
        failed.load(Ordering::Relaxed),
        stats.throttled,
        stats.max_in_flight,
    );
    handle.shutdown().await.expect("clean shutdown");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let seconds = std::env::var("SANDBOX_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let duration = Duration::from_secs(seconds);
    println!("sandbox throughput, {IN_FLIGHT} calls in flight, {seconds} s each");
    runtime.block_on(async {
        measure("GET /crm/v8/Accounts/{id}", duration, |n| {
            format!(
                "/crm/v8/Accounts/{}",
                5_725_767_000_000_400_001u64 + (n % 2500) * 13
            )
        })
        .await;
        measure(
            "GET /crm/v8/Accounts?fields=..&per_page=10",
            duration,
            |n| {
                format!(
                    "/crm/v8/Accounts?fields=Account_Name,Territory&per_page=10&page={}",
                    n % 10 + 1
                )
            },
        )
        .await;
        measure("GET /crm/v8/settings/territories", duration, |_| {
            "/crm/v8/settings/territories".to_string()
        })
        .await;
    });
}
