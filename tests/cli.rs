//! The main workflow through the real binary against an in-process sandbox: plan,
//! apply, re-plan, and bad input that must apply nothing.

use serde_json::Value;

use crate::util::{calls, code, realign, realign_async, stderr, stdout, Workdir};

fn json(out: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_apply_replan_converges_with_minimal_calls() {
    let sb = crate::util::sandbox().await;
    let w = Workdir::new();

    let first = realign_async(
        w.path(),
        Some(&sb),
        &["plan", "territories", "--format", "json"],
    )
    .await;
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let plan = json(&first);
    assert_eq!(plan["format_version"], 1);
    let changes = plan["summary"]["changes"].as_u64().unwrap();
    assert!(changes > 0);
    let c = &plan["changes"][0];
    for key in ["account_id", "before", "after", "reason"] {
        assert!(c.get(key).is_some(), "change lacks `{key}`: {c}");
    }
    assert!(c["account_id"].is_string(), "ids are strings: {c}");

    let applied = realign_async(
        w.path(),
        Some(&sb),
        &["apply", "territories", "--auto-approve"],
    )
    .await;
    assert_eq!(code(&applied), 0, "{}", stderr(&applied));

    let second = realign_async(
        w.path(),
        Some(&sb),
        &["plan", "territories", "--format", "json"],
    )
    .await;
    assert_eq!(
        json(&second)["summary"]["changes"],
        0,
        "{}",
        stdout(&second)
    );

    let stats = sb.stats().await;
    let records = plan["summary"]["records"].as_u64().unwrap();
    let pages = records.div_ceil(2000);
    assert_eq!(
        calls(&stats, "PUT /crm/v8/Accounts"),
        changes.div_ceil(100),
        "{stats:?}"
    );
    // Four full reads (plan; apply's plan and its read-back check; plan), each the
    // fewest COQL pages possible.
    assert_eq!(calls(&stats, "POST /crm/v8/coql"), 4 * pages, "{stats:?}");
    assert_eq!(calls(&stats, "GET /crm/v8/Accounts"), 0, "{stats:?}");
    assert_eq!(stats.throttled, 0, "{stats:?}");
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detailed_exitcode_is_2_with_changes_and_0_without() {
    let sb = crate::util::sandbox().await;
    let w = Workdir::new();
    let p = realign_async(w.path(), Some(&sb), &["plan", "--detailed-exitcode"]).await;
    assert_eq!(code(&p), 2, "{}", stderr(&p));
    assert!(stdout(&p).contains("Plan: "), "{}", stdout(&p));
    let a = realign_async(w.path(), Some(&sb), &["apply", "--auto-approve"]).await;
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    let p = realign_async(w.path(), Some(&sb), &["plan", "--detailed-exitcode"]).await;
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    assert!(stdout(&p).contains("No changes"), "{}", stdout(&p));
    sb.shutdown().await.unwrap();
}

/// Each case breaks the spec one way; apply must exit 1, name the file and line, and
/// send no write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_spec_applies_nothing_and_names_file_and_line() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "bad indentation",
            "territories/emea/dach.yaml",
            "name: DACH\naccounts:\n  rules:\n    - name: dach\n      field: Billing_Country\n     in: [Germany]\n",
            &["dach.yaml:6"],
        ),
        (
            "unknown key",
            "territories/emea/france.yaml",
            "name: France\npriorty: 5\naccounts:\n  rules:\n    - field: Billing_Country\n      equals: France\n",
            &["france.yaml:2:1", "unknown field `priorty`"],
        ),
        (
            "duplicate claim",
            "territories/emea/germany.yaml",
            "name: Germany\nparent: EMEA\naccounts:\n  rules:\n    - name: germany\n      field: Billing_Country\n      equals: Germany\n",
            &["germany.yaml:5", "dach.yaml", "rule `germany`", "rule `dach`", "claimed equally"],
        ),
        (
            "duplicate explicit id",
            "territories/vip.yaml",
            "name: VIP\npriority: 100\naccounts:\n  ids: [\"5725767000000400092\"]\n",
            &["5725767000000400092", "strategic.yaml", "vip.yaml:4"],
        ),
        ("half-written file", "territories/apac/korea.yaml", "", &["korea.yaml:1:1", "empty"]),
    ];
    let sb = crate::util::sandbox().await;
    for (what, file, text, needles) in cases {
        let w = Workdir::new();
        w.write(file, text);
        let out = realign_async(
            w.path(),
            Some(&sb),
            &["apply", "territories", "--auto-approve"],
        )
        .await;
        let err = stderr(&out);
        assert_eq!(code(&out), 1, "{what}: {err}");
        for n in *needles {
            assert!(err.contains(n), "{what}: stderr lacks `{n}`:\n{err}");
        }
    }
    let stats = sb.stats().await;
    assert_eq!(calls(&stats, "PUT "), 0, "no case may write");
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardrails_refuse_large_changes_unless_allowed() {
    let sb = crate::util::sandbox().await;
    let w = Workdir::new();
    let org = std::fs::read_to_string(w.spec().join("realign.yaml")).unwrap();
    w.write(
        "territories/realign.yaml",
        &org.replace("max_changes: 1500", "max_changes: 10"),
    );
    let out = realign_async(w.path(), Some(&sb), &["apply", "--auto-approve"]).await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`max_changes` guardrail of 10"),
        "{}",
        stderr(&out)
    );
    assert_eq!(calls(&sb.stats().await, "PUT "), 0);
    let out = realign_async(
        w.path(),
        Some(&sb),
        &["apply", "--auto-approve", "--allow-large-change"],
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_stop_before_any_read_and_never_print_secrets() {
    let sb = crate::util::sandbox().await;
    let w = Workdir::new();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_realign"));
    cmd.current_dir(w.path())
        .args(["apply", "--auto-approve"])
        .env("ZOHO_CLIENT_ID", realign::sandbox::CLIENT_ID)
        .env("ZOHO_CLIENT_SECRET", "not-the-secret-1234")
        .env("ZOHO_REFRESH_TOKEN", "wrong-refresh-5678")
        .env("ZOHO_ACCOUNTS_URL", sb.base_url())
        .env("ZOHO_API_DOMAIN", sb.base_url());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(code(&out), 1, "{all}");
    assert!(
        all.contains("ZOHO_CLIENT_SECRET") || all.contains("refresh token"),
        "{all}"
    );
    assert!(
        !all.contains("not-the-secret-1234") && !all.contains("wrong-refresh-5678"),
        "{all}"
    );
    let stats = sb.stats().await;
    assert_eq!(calls(&stats, "/crm/"), 0, "{stats:?}");
    sb.shutdown().await.unwrap();
}

#[test]
fn partial_credentials_are_an_error() {
    let w = Workdir::new();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_realign"));
    cmd.current_dir(w.path())
        .arg("plan")
        .env("ZOHO_CLIENT_ID", "x");
    cmd.env_remove("ZOHO_CLIENT_SECRET")
        .env_remove("ZOHO_REFRESH_TOKEN");
    let out = cmd.output().unwrap();
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("ZOHO_CLIENT_SECRET, ZOHO_REFRESH_TOKEN are not set"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn embedded_sandbox_keeps_the_org_between_processes() {
    let w = Workdir::new();
    let p = realign(w.path(), None, &["plan", "--format", "summary"]);
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    assert!(stderr(&p).contains("embedded sandbox"), "{}", stderr(&p));
    let before: Value = serde_json::from_str(&stdout(&p)).unwrap();
    assert!(before["summary"]["changes"].as_u64().unwrap() > 0);
    assert!(w.path().join(".realign/sandbox-state.json").is_file());
    let a = realign(w.path(), None, &["apply", "--auto-approve"]);
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    let p = realign(w.path(), None, &["plan", "--format", "summary"]);
    let after: Value = serde_json::from_str(&stdout(&p)).unwrap();
    assert_eq!(after["summary"]["changes"], 0);
    // The journal records every record's outcome.
    let runs: Vec<_> = std::fs::read_dir(w.path().join(".realign/runs"))
        .unwrap()
        .collect();
    assert_eq!(runs.len(), 1);
    let journal = std::fs::read_to_string(runs[0].as_ref().unwrap().path()).unwrap();
    let updated = journal
        .lines()
        .filter(|l| l.contains("\"status\":\"updated\""))
        .count() as u64;
    assert_eq!(updated, before["summary"]["changes"].as_u64().unwrap());
    assert!(!journal.contains(realign::sandbox::CLIENT_SECRET));
}

#[test]
fn apply_without_a_terminal_needs_auto_approve() {
    let w = Workdir::new();
    let out = realign(w.path(), None, &["apply"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("--auto-approve"), "{}", stderr(&out));
    let p = realign(w.path(), None, &["plan", "--detailed-exitcode"]);
    assert_eq!(code(&p), 2, "nothing was applied: {}", stderr(&p));
}

#[test]
fn validate_reports_machine_readable_positions() {
    let w = Workdir::new();
    let ok = realign(w.path(), None, &["validate"]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    w.write(
        "territories/emea/france.yaml",
        "name: France\nacounts: {}\n",
    );
    let bad = realign(w.path(), None, &["validate", "--format", "json"]);
    assert_eq!(code(&bad), 1);
    let v: Value = serde_json::from_str(&stdout(&bad)).unwrap();
    assert_eq!(v["valid"], false);
    let e = &v["errors"][0];
    assert!(e["file"].as_str().unwrap().ends_with("france.yaml"), "{e}");
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(2), Some(1)),
        "{e}"
    );
    assert!(
        !w.path().join(".realign").exists(),
        "validate must not touch any org"
    );
}

#[test]
fn committed_schemas_match_the_code() {
    let out = realign(
        std::path::Path::new(crate::util::REPO),
        None,
        &["schema", "--check"],
    );
    assert_eq!(
        code(&out),
        0,
        "run `realign schema` and commit: {}",
        stderr(&out)
    );
}

#[test]
fn unquoted_and_quoted_ids_plan_the_same() {
    let w = Workdir::new();
    let p = realign(w.path(), None, &["explain", "5725767000000415042"]);
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    assert!(stdout(&p).contains("Strategic Accounts"), "{}", stdout(&p));
    assert!(stdout(&p).contains("explicit id"), "{}", stdout(&p));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_plan_applies_exactly_and_skips_records_that_moved_since() {
    let sb = crate::util::sandbox().await;
    let w = Workdir::new();
    let p = realign_async(
        w.path(),
        Some(&sb),
        &["plan", "--out", "plan.json", "--format", "summary"],
    )
    .await;
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(w.path().join("plan.json")).unwrap())
            .unwrap();
    let changes = plan["changes"].as_array().unwrap();
    assert!(
        changes[0]["before"]["modified_time"].is_string(),
        "{}",
        changes[0]
    );
    // Someone edits one planned record in the CRM after review.
    let moved = changes[3]["account_id"].as_str().unwrap().to_string();
    sb.edit_record(
        "Accounts",
        &moved,
        serde_json::json!({"Territory": "Japan"}),
    )
    .unwrap();

    let a = realign_async(
        w.path(),
        Some(&sb),
        &["apply", "plan.json", "--auto-approve"],
    )
    .await;
    assert_eq!(code(&a), 3, "{}", stderr(&a));
    assert!(
        stderr(&a).contains(&format!("stale, skipped: {moved}")),
        "{}",
        stderr(&a)
    );
    let after = realign_async(w.path(), Some(&sb), &["plan", "--format", "json"]).await;
    let after = json(&after);
    let left: Vec<&str> = after["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        left,
        vec![moved.as_str()],
        "only the stale record is left to change"
    );
    let rec = sb.record("Accounts", &moved).unwrap();
    assert_eq!(
        rec["Territory"], "Japan",
        "the stale record was left untouched: {rec}"
    );
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_for_another_org_or_format_is_refused() {
    let a = crate::util::sandbox().await;
    let b = crate::util::sandbox().await;
    let w = Workdir::new();
    let p = realign_async(
        w.path(),
        Some(&a),
        &["plan", "--out", "plan.json", "--format", "summary"],
    )
    .await;
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    let out = realign_async(
        w.path(),
        Some(&b),
        &["apply", "plan.json", "--auto-approve"],
    )
    .await;
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("refusing to apply it to another org"),
        "{}",
        stderr(&out)
    );

    let text = std::fs::read_to_string(w.path().join("plan.json")).unwrap();
    w.write(
        "future.json",
        &text.replacen("\"format_version\": 1", "\"format_version\": 99", 1),
    );
    let out = realign_async(
        w.path(),
        Some(&a),
        &["apply", "future.json", "--auto-approve"],
    )
    .await;
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("format version 99"),
        "{}",
        stderr(&out)
    );
    for sb in [&a, &b] {
        assert_eq!(calls(&sb.stats().await, "PUT "), 0);
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// A real process, killed with SIGKILL while batches are in flight: the journal shows
/// what was sent, and a re-run converges with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_killed_mid_run_converges_on_the_rerun() {
    let (sb, w) = slow_apply().await;
    let mut child =
        crate::util::command(w.path(), Some(&sb.base_url()), &["apply", "--auto-approve"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    wait_for_batches(&w, 6).await;
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let written = calls(&sb.stats().await, "PUT /crm/v8/Accounts");
    assert!(
        batches_sent(&w) >= 6,
        "the run was killed before it sent anything"
    );
    assert!(
        written < 45,
        "the kill came too late to test anything: {written} batches written"
    );
    assert!(!journals(&w).contains("\"event\":\"end\""));

    let plan = json(&realign_async(w.path(), Some(&sb), &["plan", "--format", "json"]).await);
    assert!(
        plan["summary"]["changes"].as_u64().unwrap() > 0,
        "some changes are left after the kill"
    );
    let rerun = realign_async(w.path(), Some(&sb), &["apply", "--auto-approve"]).await;
    assert_eq!(code(&rerun), 0, "{}", stderr(&rerun));
    assert!(
        stderr(&rerun).contains("stopped without finishing"),
        "{}",
        stderr(&rerun)
    );
    let plan = json(&realign_async(w.path(), Some(&sb), &["plan", "--format", "json"]).await);
    assert_eq!(plan["summary"]["changes"], 0);
    sb.shutdown().await.unwrap();
}

/// A sandbox answering in 150 ms and a spec applying 10 records a batch, 2 at a time:
/// an apply slow enough to interrupt part-way (46 batches).
async fn slow_apply() -> (realign::sandbox::SandboxHandle, Workdir) {
    use realign::sandbox::{Faults, SandboxConfig};
    let sb = crate::util::sandbox_with(SandboxConfig {
        faults: Faults {
            latency_ms: 150,
            ..Faults::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let w = Workdir::new();
    let org = std::fs::read_to_string(w.spec().join("realign.yaml")).unwrap();
    w.write(
        "territories/realign.yaml",
        &format!("{org}pacing:\n  batch_size: 10\n  concurrency: 2\n"),
    );
    (sb, w)
}

/// Every journal in the workdir, concatenated.
fn journals(w: &Workdir) -> String {
    std::fs::read_dir(w.path().join(".realign/runs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

fn batches_sent(w: &Workdir) -> usize {
    journals(w).matches("\"event\":\"batch\"").count()
}

/// Waits (60 s at most) until the journals show `n` batches sent.
async fn wait_for_batches(w: &Workdir, n: usize) {
    let started = std::time::Instant::now();
    while batches_sent(w) < n && started.elapsed() < std::time::Duration::from_secs(60) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The demo seed's plan, as a pull request would show it: a regression net over the seed,
/// the planner and the markdown rendering together. Ports are filtered out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_plan_as_markdown_matches_its_snapshot() {
    let sb = crate::util::sandbox().await;
    let w = Workdir::new();
    let p = realign_async(w.path(), Some(&sb), &["plan", "--format", "markdown"]).await;
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    let md = stdout(&p);
    assert!(md.len() <= 65_536);
    insta::with_settings!({filters => vec![(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT")]}, {
        insta::assert_snapshot!("demo_plan_markdown", md);
    });
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_would_empty_a_protected_territory_is_refused() {
    let sb = crate::util::sandbox().await;
    let w = Workdir::new();
    w.write(
        "territories/strategic.yaml",
        "name: Strategic Accounts\npriority: 100\nprotected: true\naccounts:\n  ids: []\n",
    );
    for extra in [&[][..], &["--allow-large-change"][..]] {
        let mut args = vec!["apply", "--auto-approve"];
        args.extend_from_slice(extra);
        let out = realign_async(w.path(), Some(&sb), &args).await;
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("would empty `Strategic Accounts`"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(calls(&sb.stats().await, "PUT "), 0);
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_the_remaining_credits_cannot_finish_is_refused_before_it_starts() {
    use realign::sandbox::SandboxConfig;
    // 20 credits a day: the reads use 12, Zoho then reports 8 left (it says once half is
    // used), and the 451 changes need 46.
    let sb = crate::util::sandbox_with(SandboxConfig {
        daily_credits: Some(20),
        ..SandboxConfig::default()
    })
    .await;
    let w = Workdir::new();
    let p = realign_async(w.path(), Some(&sb), &["plan", "--format", "summary"]).await;
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    let out = realign_async(w.path(), Some(&sb), &["apply", "--auto-approve"]).await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("needs about 46 API credits") && err.contains("left today"),
        "{err}"
    );
    assert_eq!(calls(&sb.stats().await, "PUT "), 0);
    sb.shutdown().await.unwrap();
}

/// SIGTERM while batches are in flight: they finish, the journal ends with a summary,
/// and the exit is non-zero; a re-run converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_batches_in_flight_writes_the_journal_and_exits_non_zero() {
    let (sb, w) = slow_apply().await;
    let child = crate::util::command(w.path(), Some(&sb.base_url()), &["apply", "--auto-approve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_batches(&w, 4).await;
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    let j = journals(&w);
    assert!(
        j.contains("\"event\":\"end\""),
        "the journal is closed with a summary"
    );
    let sent = batches_sent(&w);
    let results = j.matches("\"event\":\"result\"").count();
    assert_eq!(
        results,
        sent * 10,
        "every batch sent has its records' outcomes"
    );
    assert!(sent < 46, "stopped before the end: {sent} batches");
    let rerun = realign_async(w.path(), Some(&sb), &["apply", "--auto-approve"]).await;
    assert_eq!(code(&rerun), 0, "{}", stderr(&rerun));
    let plan = json(&realign_async(w.path(), Some(&sb), &["plan", "--format", "json"]).await);
    assert_eq!(plan["summary"]["changes"], 0);
    sb.shutdown().await.unwrap();
}

/// The fault mix of the benchmark (20% 429, 5% 5xx, 1% dropped connections) and a noisy
/// neighbour holding half the concurrency: apply converges, and the journal shows every
/// record updated exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_converges_under_faults_and_beside_a_noisy_neighbour() {
    use realign::sandbox::{Faults, SandboxConfig};
    let mixes = [
        Faults {
            seed: 11,
            throttle_rate: 0.2,
            error_rate: 0.05,
            reset_rate: 0.01,
            latency_ms: 20,
            ..Faults::default()
        },
        Faults {
            neighbour_concurrency: 10,
            neighbour_credits_per_min: 500,
            latency_ms: 50,
            ..Faults::default()
        },
    ];
    for faults in mixes {
        let sb = crate::util::sandbox_with(SandboxConfig {
            faults: faults.clone(),
            ..SandboxConfig::default()
        })
        .await;
        let w = Workdir::new();
        let a = realign_async(w.path(), Some(&sb), &["apply", "--auto-approve"]).await;
        assert_eq!(code(&a), 0, "{faults:?}: {}", stderr(&a));
        let r = reqwest::Client::new()
            .post(format!("{}/__sandbox/faults", sb.base_url()))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let plan = json(&realign_async(w.path(), Some(&sb), &["plan", "--format", "json"]).await);
        assert_eq!(plan["summary"]["changes"], 0, "{faults:?}");
        let runs: Vec<_> = std::fs::read_dir(w.path().join(".realign/runs"))
            .unwrap()
            .flatten()
            .collect();
        let journal = std::fs::read_to_string(runs[0].path()).unwrap();
        let mut updated = std::collections::HashMap::<String, usize>::new();
        for line in journal.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["event"] == "result" && v["status"] == "updated" {
                *updated
                    .entry(v["id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
        assert_eq!(updated.len(), 451, "{faults:?}");
        assert!(
            updated.values().all(|n| *n == 1),
            "{faults:?}: a record updated twice"
        );
        sb.shutdown().await.unwrap();
    }
}
