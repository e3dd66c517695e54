//! Native Territory Management mode against the sandbox's `native` seed, `explain`, and
//! `import` in both modes.

use realign::sandbox::{SandboxConfig, SandboxHandle, Seed};
use serde_json::{json, Value};

use crate::util::{calls, code, realign_async, stderr, stdout, Workdir};

async fn native_sandbox(scheduled: bool) -> SandboxHandle {
    crate::util::sandbox_with(SandboxConfig {
        seed: Seed::Native,
        schedule_territory_jobs: scheduled,
        ..SandboxConfig::default()
    })
    .await
}

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(o), stderr(o)))
}

async fn plan(w: &Workdir, sb: &SandboxHandle) -> Value {
    let p = realign_async(w.path(), Some(sb), &["plan", "--format", "json"]).await;
    assert_eq!(code(&p), 0, "{}", stderr(&p));
    json_of(&p)
}

async fn record(sb: &SandboxHandle, id: &str) -> Value {
    sb.record("Accounts", id).expect("the record exists")
}

/// Gives a record an extra membership that a Zoho rule holds, in a territory the spec
/// does not want for it.
async fn add_rule_membership(sb: &SandboxHandle, id: &str, territory: (&str, &str)) {
    let mut memberships = record(sb, id).await["Territories"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    memberships.push(
        json!({"Name": territory.0, "id": territory.1, "$assigned": "automatically",
                            "$assigned_time": "2026-11-30T10:00:00+00:00", "$assigned_by": null}),
    );
    sb.edit_record("Accounts", id, json!({"Territories": memberships}))
        .unwrap();
}

fn territory_id(plan: &Value, name: &str) -> String {
    plan["declared"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_plan_apply_replan_converges_and_leaves_rule_memberships_alone() {
    let sb = native_sandbox(false).await;
    let w = Workdir::with_spec("examples/native");
    let first = plan(&w, &sb).await;
    // A Zoho rule put this German account in Nordics too; the spec wants it in DACH only.
    assert!(first["summary"]["changes"].as_u64().unwrap() > 0);
    let german = "5725767000000400027";
    add_rule_membership(&sb, german, ("Nordics", &territory_id(&first, "Nordics"))).await;

    let before = plan(&w, &sb).await;
    let changes = before["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    let assigns = changes.iter().filter(|c| c.get("assign").is_some()).count() as u64;
    let removes = changes.iter().filter(|c| c.get("remove").is_some()).count() as u64;
    let held = before["held_by_rules"]
        .as_array()
        .expect("rule-held memberships are listed");
    let seeded = first["held_by_rules"].as_array().map(Vec::len).unwrap_or(0);
    assert!(
        seeded > 0,
        "the native seed has rule-held memberships the spec does not want"
    );
    assert_eq!(held.len(), seeded + 1, "{held:?}");
    let mine = held
        .iter()
        .find(|h| h["account_id"] == german)
        .expect("the added one is listed");
    assert_eq!(mine["territory"]["name"], "Nordics");
    let rule_assigned = before["summary"]["rule_assigned"].as_u64().unwrap();
    assert!(rule_assigned > 1, "the seed has rule-assigned memberships");

    let stats0 = sb.stats().await;
    let a = realign_async(w.path(), Some(&sb), &["apply", "--auto-approve"]).await;
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    let stats = sb.stats().await;
    let assign_calls = calls(&stats, "assign_territories") - calls(&stats0, "assign_territories");
    let remove_calls = calls(&stats, "remove_territories") - calls(&stats0, "remove_territories");
    assert_eq!(
        assign_calls,
        assigns.div_ceil(10),
        "assign calls = ceil(records / 10)"
    );
    assert_eq!(
        remove_calls,
        removes.div_ceil(10),
        "remove calls = ceil(records / 10)"
    );
    assert_eq!(stats.throttled, 0);

    let after = plan(&w, &sb).await;
    assert_eq!(after["summary"]["changes"], 0, "{}", after["summary"]);
    assert_eq!(
        after["summary"]["rule_assigned"].as_u64().unwrap(),
        rule_assigned,
        "no rule membership was removed"
    );
    assert_eq!(
        after["held_by_rules"].as_array().map(Vec::len),
        Some(seeded + 1),
        "rule-held memberships stay"
    );
    let rec = record(&sb, german).await;
    let names: Vec<&str> = rec["Territories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Nordics") && names.contains(&"DACH"),
        "{names:?}"
    );
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_jobs_are_tracked_not_resent() {
    let sb = native_sandbox(true).await;
    let w = Workdir::with_spec("examples/native");
    let before = plan(&w, &sb).await;
    let changes = before["changes"].as_array().unwrap();
    let assigns = changes.iter().filter(|c| c.get("assign").is_some()).count() as u64;
    let a = realign_async(w.path(), Some(&sb), &["apply", "--auto-approve"]).await;
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    assert!(stderr(&a).contains("background jobs"), "{}", stderr(&a));
    let stats = sb.stats().await;
    assert_eq!(
        calls(&stats, "assign_territories"),
        assigns.div_ceil(10),
        "nothing re-sent while pending"
    );
    assert_eq!(plan(&w, &sb).await["summary"]["changes"], 0);
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_territory_is_an_error_before_any_write_and_hierarchy_is_checked() {
    let sb = native_sandbox(false).await;
    let w = Workdir::with_spec("examples/native");
    w.write(
        "territories/apac/korea.yaml",
        "name: Korea\nparent: APAC\naccounts:\n  rules:\n    - field: Billing_Country\n      equals: South Korea\n",
    );
    let a = realign_async(w.path(), Some(&sb), &["apply", "--auto-approve"]).await;
    assert_eq!(code(&a), 1);
    assert!(
        stderr(&a).contains("korea.yaml:1") && stderr(&a).contains("no territory named `Korea`"),
        "{}",
        stderr(&a)
    );
    assert_eq!(calls(&sb.stats().await, "_territories"), 0);

    std::fs::remove_file(w.spec().join("apac/korea.yaml")).unwrap();
    let japan = std::fs::read_to_string(w.spec().join("apac/japan.yaml")).unwrap();
    w.write(
        "territories/apac/japan.yaml",
        &japan.replace("parent: APAC", "parent: EMEA"),
    );
    let p = plan(&w, &sb).await;
    let notes: Vec<&str> = p["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("`Japan` reports to `APAC` in Zoho")),
        "{notes:?}"
    );
    sb.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_winners_losers_and_rule_held_memberships() {
    let sb = native_sandbox(false).await;
    let w = Workdir::with_spec("examples/native");
    let p = plan(&w, &sb).await;
    // A Californian account: West (priority 10) beats East (priority 0).
    let west_account = find_account(&sb, &["CA", "WA", "OR"]).await;
    let e = realign_async(w.path(), Some(&sb), &["explain", &west_account]).await;
    assert_eq!(code(&e), 0, "{}", stderr(&e));
    let text = stdout(&e);
    assert!(text.contains("desired:  North America West"), "{text}");
    assert!(
        text.contains("lost:     North America East") && text.contains("priority 0 is below 10"),
        "{text}"
    );

    let german = "5725767000000400027";
    add_rule_membership(&sb, german, ("Nordics", &territory_id(&p, "Nordics"))).await;
    let e = realign_async(w.path(), Some(&sb), &["explain", german]).await;
    let text = stdout(&e);
    assert!(
        text.contains("held:     Nordics") && text.contains("by a Zoho territory rule"),
        "{text}"
    );
    assert!(text.contains("desired:  DACH"), "{text}");
    sb.shutdown().await.unwrap();
}

/// The id of a US account billed in one of `states`, found through the sandbox.
async fn find_account(sb: &SandboxHandle, states: &[&str]) -> String {
    for i in 0..2500u64 {
        let id = (5725767000000400001u64 + i * 13).to_string();
        let r = record(sb, &id).await;
        let us = r["Billing_Country"]
            .as_str()
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("united states"));
        if us && states.contains(&r["Billing_State"].as_str().unwrap_or("")) && i % 50 != 7 {
            return id;
        }
    }
    panic!("no such account in the seed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_then_plan_shows_no_changes_in_both_modes() {
    for (seed, mode) in [(Seed::Demo, "field"), (Seed::Native, "native")] {
        let sb = crate::util::sandbox_with(SandboxConfig {
            seed,
            ..SandboxConfig::default()
        })
        .await;
        let w = Workdir::new();
        let i = realign_async(
            w.path(),
            Some(&sb),
            &["import", "--out", "imported", "--mode", mode],
        )
        .await;
        assert_eq!(code(&i), 0, "{mode}: {}", stderr(&i));
        let p = realign_async(
            w.path(),
            Some(&sb),
            &["plan", "imported", "--format", "json"],
        )
        .await;
        assert_eq!(code(&p), 0, "{mode}: {}", stderr(&p));
        assert_eq!(json_of(&p)["summary"]["changes"], 0, "{mode}");
        let again = realign_async(
            w.path(),
            Some(&sb),
            &["import", "--out", "imported", "--mode", mode],
        )
        .await;
        assert_eq!(
            code(&again),
            1,
            "{mode}: an existing spec is not overwritten"
        );
        assert_eq!(calls(&sb.stats().await, "PUT "), 0);
        sb.shutdown().await.unwrap();
    }
}
