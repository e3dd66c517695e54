//! The client against the sandbox and against a scripted server: retries, Retry-After in
//! both forms, rate-limit reset headers, token sharing, credit budgets, garbage answers.
//! Waits are recorded, not slept (the client's test switch), so nothing here is slow.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use realign::edition::Edition;
use realign::sandbox::{self, Faults, HeaderProfile, SandboxConfig, SandboxHandle};
use realign::spec::{Id, Module};
use realign::zoho::records::{self, ReadRequest};
use realign::zoho::{Client, Connection, Secret, ZohoError};
use serde_json::{json, Value};

use crate::util::{calls, sandbox_with};

fn conn(base: &str) -> Connection {
    Connection {
        client_id: sandbox::CLIENT_ID.into(),
        client_secret: Secret::new(sandbox::CLIENT_SECRET),
        refresh_token: Secret::new(sandbox::REFRESH_TOKEN),
        accounts_url: base.into(),
        api_domain: Some(base.into()),
        dc: "test".into(),
    }
}

fn client(base: &str) -> Client {
    Client::new(conn(base), Edition::Enterprise, None)
        .unwrap()
        .with_time_scale(0.0)
}

const RULES: &[String] = &[];

fn req() -> ReadRequest<'static> {
    ReadRequest {
        module: Module::Accounts,
        territory_field: Some("Territory"),
        rule_fields: RULES,
    }
}

fn delays(c: &Client) -> Vec<Duration> {
    c.stats.delays.lock().unwrap().clone()
}

async fn throttling_sandbox(headers: HeaderProfile) -> SandboxHandle {
    sandbox_with(SandboxConfig {
        headers,
        faults: Faults {
            seed: 3,
            throttle_rate: 0.4,
            ..Faults::default()
        },
        ..SandboxConfig::default()
    })
    .await
}

#[tokio::test]
async fn retry_after_in_both_forms_is_a_floor() {
    let sb = throttling_sandbox(HeaderProfile::Legacy).await;
    let c = client(&sb.base_url());
    let org = records::fetch_all(&c, &req(), |_| {}).await.unwrap();
    assert_eq!(org.records.len(), 2500);
    let batch: Vec<(Id, Option<String>)> = org
        .records
        .iter()
        .take(100)
        .map(|r| (r.id.clone(), r.territory.clone()))
        .collect();
    for _ in 0..6 {
        records::update(&c, Module::Accounts, "Territory", &batch, None)
            .await
            .unwrap();
    }
    let stats = sb.stats().await;
    assert!(
        stats.throttled >= 2,
        "the fault mix should throttle: {stats:?}"
    );
    let d = delays(&c);
    assert_eq!(d.len() as u64, stats.throttled, "one wait per 429");
    // The sandbox alternates `Retry-After: 2` and an HTTP-date about 3 s ahead; both floors hold.
    assert!(d.iter().all(|x| *x >= Duration::from_secs(1)), "{d:?}");
    sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_retry_after_backoff_is_jittered_exponential() {
    let sb = throttling_sandbox(HeaderProfile::Standard).await;
    let c = client(&sb.base_url());
    records::fetch_all(&c, &req(), |_| {}).await.unwrap();
    for _ in 0..4 {
        records::fetch_all(&c, &req(), |_| {}).await.unwrap();
    }
    let d = delays(&c);
    assert!(!d.is_empty());
    assert!(
        d.iter().all(|x| *x <= Duration::from_secs(20)),
        "capped: {d:?}"
    );
    assert!(
        d.iter().any(|x| *x < Duration::from_secs(1)),
        "no floor without Retry-After: {d:?}"
    );
    sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_calls_share_one_token_and_a_revoked_one_is_refreshed_once() {
    let sb = sandbox_with(SandboxConfig::default()).await;
    let c = Arc::new(client(&sb.base_url()));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            records::fetch_ids(&c, &req(), &[Id::parse("5725767000000400001").unwrap()]).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(calls(&sb.stats().await, "/oauth/v2/token"), 1);
    reqwest::Client::new()
        .post(format!("{}/__sandbox/revoke_tokens", sb.base_url()))
        .send()
        .await
        .unwrap();
    records::fetch_ids(&c, &req(), &[Id::parse("5725767000000400001").unwrap()])
        .await
        .unwrap();
    assert_eq!(calls(&sb.stats().await, "/oauth/v2/token"), 2);
    sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_429_storm_ends_in_a_clear_error_not_a_hang() {
    let sb = sandbox_with(SandboxConfig {
        faults: Faults {
            throttle_rate: 1.0,
            ..Faults::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let c = client(&sb.base_url());
    let err = records::fetch_all(&c, &req(), |_| {}).await.unwrap_err();
    assert!(
        matches!(err, ZohoError::GaveUp { attempts: 8, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("429"), "{err}");
    sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_retry_budget_is_shared_by_the_whole_run() {
    let sb = throttling_sandbox(HeaderProfile::Standard).await;
    let c = client(&sb.base_url()).with_retry_budget(1);
    let mut failed = None;
    for _ in 0..20 {
        if let Err(e) = records::fetch_all(&c, &req(), |_| {}).await {
            failed = Some(e);
            break;
        }
    }
    let e = failed.expect("a budget of one retry runs out");
    assert!(e.to_string().contains("retry budget is spent"), "{e}");
    sb.shutdown().await.unwrap();
}

/// A scripted Zoho: tokens always work; the API answers what `script` says.
async fn scripted(
    script: impl Fn(usize, &str) -> (StatusCode, HeaderMap, String) + Send + Sync + 'static,
) -> String {
    let script = Arc::new(script);
    let n = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let (script, n) = (script.clone(), n.clone());
        async move {
            if uri.path() == "/oauth/v2/token" {
                let body = json!({"access_token": "1000.t", "api_domain": "unused", "expires_in": 3600, "token_type": "Bearer"});
                return (StatusCode::OK, HeaderMap::new(), body.to_string()).into_response();
            }
            let i = n.fetch_add(1, Ordering::SeqCst);
            script(i, uri.path()).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn coql_page(rows: usize) -> String {
    let data: Vec<Value> = (0..rows)
        .map(|i| json!({"id": format!("{}", 1000 + i), "Territory": null}))
        .collect();
    json!({"data": data, "info": {"count": rows, "more_records": false}}).to_string()
}

fn ratelimit(limit: &str, remaining: &str, reset: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-ratelimit-limit", limit.parse().unwrap());
    h.insert("x-ratelimit-remaining", remaining.parse().unwrap());
    h.insert("x-ratelimit-reset", reset.parse().unwrap());
    h
}

#[tokio::test]
async fn a_nearly_spent_window_pauses_until_its_reset_in_either_form() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (reset, expect) in [
        ("30".to_string(), Some(30u64)),
        ((now + 45).to_string(), Some(45)),
        ((now - 10).to_string(), None),
        ((now + 7 * 86_400).to_string(), None),
    ] {
        let r = reset.clone();
        let base =
            scripted(move |_, _| (StatusCode::OK, ratelimit("100", "3", &r), coql_page(2))).await;
        let c = client(&base);
        records::fetch_all(&c, &req(), |_| {}).await.unwrap();
        records::fetch_all(&c, &req(), |_| {}).await.unwrap();
        let d = delays(&c);
        match expect {
            Some(secs) => {
                assert_eq!(d.len(), 1, "reset {reset}: {d:?}");
                assert!(
                    d[0] <= Duration::from_secs(secs) && d[0] >= Duration::from_secs(secs - 2),
                    "reset {reset}: {d:?}"
                );
            }
            None => assert!(d.is_empty(), "reset {reset} must not stall: {d:?}"),
        }
    }
}

#[tokio::test]
async fn a_short_or_empty_result_array_is_an_error_never_success() {
    let base = scripted(|_, _| {
        let body = json!({"data": [{"code": "SUCCESS", "status": "success", "message": "record updated", "details": {"id": "1"}}]});
        (StatusCode::OK, HeaderMap::new(), body.to_string())
    })
    .await;
    let c = client(&base);
    let batch = vec![
        (Id::parse("1").unwrap(), Some("A".into())),
        (Id::parse("2").unwrap(), Some("B".into())),
    ];
    let err = records::update(&c, Module::Accounts, "Territory", &batch, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ZohoError::Garbage { .. }), "{err}");

    let base = scripted(|_, _| {
        (
            StatusCode::OK,
            HeaderMap::new(),
            "<html>maintenance</html>".into(),
        )
    })
    .await;
    let err = records::update(&client(&base), Module::Accounts, "Territory", &batch, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ZohoError::Garbage { .. }), "{err}");
}

#[tokio::test]
async fn a_207_maps_results_to_records_by_position() {
    let base = scripted(|_, _| {
        let body = json!({"data": [
            {"code": "SUCCESS", "status": "success", "message": "record updated", "details": {"id": "1"}},
            {"code": "INVALID_DATA", "status": "error", "message": "invalid data", "details": {"api_name": "Territory"}},
        ]});
        (StatusCode::MULTI_STATUS, HeaderMap::new(), body.to_string())
    })
    .await;
    let batch = vec![
        (Id::parse("1").unwrap(), Some("A".into())),
        (Id::parse("2").unwrap(), Some("Nope".into())),
    ];
    let out = records::update(&client(&base), Module::Accounts, "Territory", &batch, None)
        .await
        .unwrap();
    assert!(matches!(out[0], records::Outcome::Updated { .. }));
    assert!(matches!(&out[1], records::Outcome::Failed { code, .. } if code == "INVALID_DATA"));
}

#[tokio::test]
async fn the_token_endpoints_throttling_answer_is_throttling_not_bad_credentials() {
    let sb = sandbox_with(SandboxConfig {
        tokens_per_window: 1,
        ..SandboxConfig::default()
    })
    .await;
    records::fetch_ids(
        &client(&sb.base_url()),
        &req(),
        &[Id::parse("5725767000000400001").unwrap()],
    )
    .await
    .unwrap();
    // A second process without the cached token asks again within the window.
    let err = records::fetch_ids(
        &client(&sb.base_url()),
        &req(),
        &[Id::parse("5725767000000400001").unwrap()],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ZohoError::TokenThrottled { .. }), "{err}");
    assert!(err.to_string().contains("wait 10 minutes"), "{err}");
    sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_cached_token_is_reused_across_clients() {
    let sb = sandbox_with(SandboxConfig {
        tokens_per_window: 1,
        ..SandboxConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let c = client(&sb.base_url()).with_token_cache(dir.path().to_path_buf());
        records::fetch_ids(&c, &req(), &[Id::parse("5725767000000400001").unwrap()])
            .await
            .unwrap();
    }
    assert_eq!(calls(&sb.stats().await, "/oauth/v2/token"), 1);
    sb.shutdown().await.unwrap();
}

/// A person edits a planned record between realign's read and its write: Zoho refuses
/// the write (If-Unmodified-Since), the edit survives, and the record is listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_made_after_the_read_is_never_overwritten() {
    let sb = sandbox_with(SandboxConfig::default()).await;
    let spec =
        realign::spec::load_dir(&std::path::Path::new(crate::util::REPO).join("territories"))
            .unwrap();
    let c = Arc::new(client(&sb.base_url()));
    let org = realign::reconcile::fetch(&c, &spec).await.unwrap();
    let target = realign::plan::Target {
        api_domain: sb.base_url(),
        org: None,
        sandbox: false,
    };
    let plan = realign::reconcile::make_plan(&spec, &org, &target).unwrap();
    let edited = plan.changes[0].account_id.to_string();
    // Modified_Time has a resolution of one second: make the edit visibly later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sb.edit_record("Accounts", &edited, json!({"Territory": "Japan"}))
        .unwrap();
    let report =
        realign::reconcile::run_apply_until(c.clone(), &plan, &spec, std::future::pending())
            .await
            .unwrap();
    let failed: Vec<String> = report.failed.iter().map(|f| f.id.to_string()).collect();
    assert!(failed.contains(&edited), "{failed:?}");
    let f = report
        .failed
        .iter()
        .find(|f| f.id.to_string() == edited)
        .unwrap();
    assert_eq!(f.code, "ALREADY_MODIFIED");
    assert!(
        f.message.contains("changed in Zoho since realign read it"),
        "{}",
        f.message
    );
    let rec = sb.record("Accounts", &edited).unwrap();
    assert_eq!(rec["Territory"], "Japan", "the person's edit stands");
    // Records of the same batch that nobody touched were written... unless they share the
    // batch's newest planned time; either way, a re-plan converges on the rest.
    assert!(report.applied.len() + report.failed.len() == plan.changes.len());
    sb.shutdown().await.unwrap();
}
