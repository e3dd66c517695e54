//! Dispatches a parsed command to the operation that carries it out.
//!
//! Each command is a thin shell: load the spec, connect, call the pure core, print.
//! Data goes to stdout; progress and messages to stderr.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::{
    ApplyArgs, Cli, Command, DemoArgs, PlanArgs, PlanFormat, SandboxArgs, SchemaArgs, ValidateArgs,
    ValidateFormat,
};
use crate::plan::{self, render, Plan, Target as PlanTarget};
use crate::reconcile::{fetch, make_plan, read_back, read_request, report_exit, run_apply, verify};
use crate::sandbox::{self, SandboxConfig};
use crate::session::{sandbox_connection, Session};
use crate::spec::{self, Spec};
use crate::zoho::records::{self, ReadRequest};
use crate::zoho::Client;

/// Process exit codes (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Error = 1,
    Changes = 2,
    Partial = 3,
}

pub async fn run(cli: Cli) -> Result<Exit> {
    match cli.command {
        Command::Demo(a) => demo(a).await,
        Command::Plan(a) => plan_cmd(a).await,
        Command::Apply(a) => apply_cmd(a).await,
        Command::Validate(a) => validate(a),
        Command::Schema(a) => schema(a),
        Command::Sandbox(a) => sandbox_cmd(a).await,
        Command::Explain(a) => explain(&a.account_id, &a.dir).await,
        Command::Watch(a) => crate::watch::watch(a).await,
        Command::Import(a) => import_cmd(a).await,
    }
}

/// Writes data to stdout; a closed pipe (`realign plan | head`) is not an error.
pub fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}

fn load_spec(dir: &Path) -> Result<Spec> {
    Ok(spec::load_dir(dir)?)
}

async fn plan_cmd(args: PlanArgs) -> Result<Exit> {
    let spec = load_spec(&args.dir)?;
    let session = Session::connect(&spec).await?;
    let result = async {
        let org = fetch(&session.client, &spec).await?;
        let mut plan = make_plan(&spec, &org, &session.target)?;
        if args.out.is_some() {
            // A saved plan names its org, so it cannot be applied to another one.
            plan.target.org = records::org_id(&session.client).await;
        }
        Ok::<_, anyhow::Error>(plan)
    }
    .await;
    session.close().await?;
    let plan = result?;
    if let Err(why) = plan::check_guardrails(&plan, &spec.org.guardrails) {
        crate::say!("note: `realign apply` would refuse this plan: {why}");
    }
    if let Some(path) = &args.out {
        write_atomic(path, render::json(&plan).as_bytes())?;
        crate::say!("wrote the plan to {}", path.display());
    }
    match args.format {
        PlanFormat::Text => out(&render::text(&plan))?,
        PlanFormat::Json => out(&render::json(&plan))?,
        PlanFormat::Markdown => out(&render::markdown(&plan))?,
        PlanFormat::Summary => out(&format!(
            "{}\n",
            serde_json::json!({"format_version": plan.format_version, "summary": plan.summary, "cost": plan.cost})
        ))?,
    }
    Ok(if args.detailed_exitcode && plan.summary.changes > 0 {
        Exit::Changes
    } else {
        Exit::Success
    })
}

/// Writes through a temporary file and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

async fn apply_cmd(args: ApplyArgs) -> Result<Exit> {
    if args.target.is_file() {
        return apply_plan_file(&args).await;
    }
    let spec = load_spec(&args.target)?;
    let session = Session::connect(&spec).await?;
    let result = apply_in_session(&spec, &session, &args).await;
    session.close().await?;
    result
}

/// Reads a plan file, refusing other format versions with a message that says what to do.
pub fn read_plan_file(path: &Path) -> Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the plan file `{}`", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "`{}` is not a realign plan file: it is not JSON",
            path.display()
        )
    })?;
    match value.get("format_version").and_then(serde_json::Value::as_u64) {
        None => bail!(
            "`{}` is not a realign plan file: it has no `format_version`; write one with `realign plan --out FILE`",
            path.display()
        ),
        Some(v) if v != u64::from(plan::FORMAT_VERSION) => bail!(
            "`{}` is a plan of format version {v}; this realign ({}) reads version {}: make the plan again with this realign",
            path.display(),
            env!("CARGO_PKG_VERSION"),
            plan::FORMAT_VERSION
        ),
        Some(_) => {}
    }
    let plan: Plan = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a valid realign plan file", path.display()))?;
    check_plan_file(&plan).map_err(|e| {
        anyhow!(
            "`{}` is not a consistent plan: {e}; make the plan again with `realign plan --out`",
            path.display()
        )
    })?;
    Ok(plan)
}

/// A hand-edited plan file must still add up: each record once, and the summary
/// counting what the changes say.
fn check_plan_file(plan: &Plan) -> std::result::Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for c in &plan.changes {
        if !seen.insert(&c.account_id) {
            return Err(format!("record `{}` has two changes", c.account_id));
        }
    }
    for c in &plan.changes {
        if (c.kind == crate::plan::ChangeKind::Clear) != c.after.is_none() {
            return Err(format!(
                "record `{}` is marked `{}` but its `after` is `{}`, which do not agree",
                c.account_id,
                serde_json::to_value(c.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                c.after.as_deref().unwrap_or("(none)")
            ));
        }
    }
    if plan.summary.changes != plan.changes.len() as u64 {
        return Err(format!(
            "its summary counts {} changes but it lists {}",
            plan.summary.changes,
            plan.changes.len()
        ));
    }
    Ok(())
}

/// `realign apply PLAN_FILE`: the reviewed changes and nothing else. Records whose state
/// moved since the plan are skipped and listed (exit 3).
async fn apply_plan_file(args: &ApplyArgs) -> Result<Exit> {
    let plan = read_plan_file(&args.target)?;
    let dir = PathBuf::from(&plan.spec.dir);
    let spec = load_spec(&dir).with_context(|| {
        format!(
            "the plan was made from the spec in `{}`: run apply where that directory is (its realign.yaml holds the guardrails)",
            dir.display()
        )
    })?;
    if spec.digest != plan.spec.digest {
        crate::say!(
            "note: the spec in {} changed since the plan was made; applying the plan as it was reviewed",
            dir.display()
        );
    }
    let session = Session::connect(&spec).await?;
    let result = apply_reviewed(&spec, &session, plan, args).await;
    session.close().await?;
    result
}

async fn apply_reviewed(
    spec: &Spec,
    session: &Session,
    reviewed: Plan,
    args: &ApplyArgs,
) -> Result<Exit> {
    let here = &session.target;
    let there = &reviewed.target;
    if here.sandbox != there.sandbox || (!here.sandbox && here.api_domain != there.api_domain) {
        bail!(
            "the plan is for `{}`{} but realign is connected to `{}`{}: refusing to apply it to another org",
            there.api_domain,
            if there.sandbox { " (sandbox)" } else { "" },
            here.api_domain,
            if here.sandbox { " (sandbox)" } else { "" }
        );
    }
    if let Some(planned_org) = &there.org {
        match records::org_id(&session.client).await {
            Some(org) if &org != planned_org => {
                bail!("the plan is for org `{planned_org}` but the credentials are for org `{org}`: refusing to apply it")
            }
            _ => {}
        }
    }
    if reviewed.changes.is_empty() {
        out(&format!("{}\n", render::summary_line(&reviewed)))?;
        return Ok(Exit::Success);
    }
    if reviewed.module != spec.org.module || reviewed.field != spec.org.field {
        bail!(
            "the plan writes {} field `{}` but realign.yaml now says {} field `{}`: make the plan again",
            reviewed.module,
            reviewed.field.as_deref().unwrap_or("-"),
            spec.org.module,
            spec.org.field.as_deref().unwrap_or("-")
        );
    }
    if reviewed.mode == spec::Mode::Field {
        if let Some(c) = reviewed.changes.iter().find(|c| {
            c.after
                .as_deref()
                .is_some_and(|a| spec.territory_by_name(a).is_none())
        }) {
            bail!(
                "the plan moves `{}` to `{}`, which the spec in `{}` does not declare: make the plan again",
                c.account_id,
                c.after.as_deref().unwrap_or(""),
                spec.root.display()
            );
        }
    }
    let ids: Vec<spec::Id> = reviewed
        .changes
        .iter()
        .map(|c| c.account_id.clone())
        .collect();
    let now = read_back(
        &session.client,
        spec,
        reviewed.summary.records as usize,
        &ids,
    )
    .await
    .context("cannot re-read the planned records")?;
    let current: std::collections::HashMap<&spec::Id, &plan::Record> =
        now.records.iter().map(|r| (&r.id, r)).collect();
    let norm = |v: Option<&str>| {
        v.map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    let (mut todo, mut stale, mut done_already) = (Vec::new(), Vec::new(), 0usize);
    for c in &reviewed.changes {
        let Some(rec) = current.get(&c.account_id) else {
            stale.push(format!("{}: the record is gone", c.account_id));
            continue;
        };
        let value = norm(crate::reconcile::held_value(&reviewed, rec).as_deref());
        if value == norm(c.after.as_deref()) {
            done_already += 1;
            continue;
        }
        let moved_value = value != norm(c.before.value.as_deref());
        let touched =
            c.before.modified_time.is_some() && rec.modified_time != c.before.modified_time;
        if moved_value || touched {
            stale.push(format!(
                "{}: planned against `{}` ({}), now `{}` ({})",
                c.account_id,
                c.before.value.as_deref().unwrap_or("(none)"),
                c.before.modified_time.as_deref().unwrap_or("-"),
                value.as_deref().unwrap_or("(none)"),
                rec.modified_time.as_deref().unwrap_or("-")
            ));
            continue;
        }
        todo.push(c.clone());
    }
    for s in &stale {
        crate::say!("stale, skipped: {s}");
    }
    if done_already > 0 {
        crate::say!("{done_already} planned records already hold their planned territory");
    }
    guard(&reviewed, spec, args)?;
    let mut plan = reviewed.clone();
    plan.changes = todo;
    plan.cost = match plan.mode {
        spec::Mode::Field => plan::diff::estimate(
            plan.summary.records as usize,
            &plan.changes,
            plan.cost.batch_size.max(1) as usize,
        ),
        spec::Mode::Native => plan::native::estimate(plan.summary.records as usize, &plan.changes),
    };
    let mut exit = Exit::Success;
    if !plan.changes.is_empty() {
        exit = apply_confirmed(session, spec, &plan, args).await?;
    }
    if !stale.is_empty() {
        crate::say!(
            "{} records were stale and left untouched: run `realign plan` again to review them",
            stale.len()
        );
        if exit == Exit::Success {
            exit = Exit::Partial;
        }
    }
    Ok(exit)
}

async fn apply_in_session(spec: &Spec, session: &Session, args: &ApplyArgs) -> Result<Exit> {
    let org = fetch(&session.client, spec).await?;
    let plan = make_plan(spec, &org, &session.target)?;
    if plan.summary.changes == 0 {
        out(&format!("{}\n", render::summary_line(&plan)))?;
        return Ok(Exit::Success);
    }
    out(&render::text(&plan))?;
    guard(&plan, spec, args)?;
    apply_confirmed(session, spec, &plan, args).await
}

/// The guardrails, or with --allow-large-change only the protected territories.
fn guard(plan: &Plan, spec: &Spec, args: &ApplyArgs) -> Result<()> {
    if args.allow_large_change {
        plan::check_protected(plan).map_err(|e| anyhow!(e))
    } else {
        plan::check_guardrails(plan, &spec.org.guardrails).map_err(|e| anyhow!(e))
    }
}

/// Checks the credit budget, asks (unless --auto-approve), applies, and reads back.
async fn apply_confirmed(
    session: &Session,
    spec: &Spec,
    plan: &Plan,
    args: &ApplyArgs,
) -> Result<Exit> {
    crate::zoho::ratelimit::check_budget(
        plan.cost.write_credits,
        session.client.credits_remaining(),
    )
    .map_err(|e| anyhow!(e))?;
    if !args.auto_approve && !confirm(plan)? {
        crate::say!("apply cancelled; nothing was changed");
        return Ok(Exit::Error);
    }
    let report = run_apply(session.client.clone(), plan, spec).await?;
    let mut exit = report_exit(&report, plan);
    if exit != Exit::Error && !(report.applied.is_empty() && report.pending.is_empty()) {
        let missing = verify(&session.client, spec, plan, &report).await?;
        if !missing.is_empty() && exit == Exit::Success {
            exit = Exit::Partial;
        }
    }
    Ok(exit)
}

fn confirm(plan: &Plan) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to apply {} changes without confirmation: stdin is not a terminal; review the plan and pass --auto-approve",
            plan.summary.changes
        );
    }
    eprint!(
        "Apply {} changes to {}? Only `yes` is accepted: ",
        plan.summary.changes, plan.target.api_domain
    );
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

fn validate(args: ValidateArgs) -> Result<Exit> {
    match (spec::load_dir(&args.dir), args.format) {
        (Ok(spec), ValidateFormat::Text) => {
            out(&format!(
                "{}: {} territories, valid\n",
                args.dir.display(),
                spec.territories.len()
            ))?;
            Ok(Exit::Success)
        }
        (Ok(spec), ValidateFormat::Json) => {
            out(&format!(
                "{}\n",
                serde_json::json!({"valid": true, "territories": spec.territories.len(), "digest": spec.digest, "errors": []})
            ))?;
            Ok(Exit::Success)
        }
        (Err(e), ValidateFormat::Json) => {
            let errors = match &e {
                spec::SpecError::Invalid(d) => serde_json::to_value(d)?,
                other => {
                    serde_json::json!([{"file": args.dir, "line": 0, "column": 0, "message": other.to_string()}])
                }
            };
            out(&format!(
                "{}\n",
                serde_json::json!({"valid": false, "errors": errors})
            ))?;
            Ok(Exit::Error)
        }
        (Err(e), ValidateFormat::Text) => Err(e.into()),
    }
}

/// The JSON Schemas realign publishes, by file name.
pub fn schemas() -> Vec<(&'static str, String)> {
    let gen = |s: schemars::Schema| {
        let mut t = serde_json::to_string_pretty(&s).expect("schemas serialise");
        t.push('\n');
        t
    };
    vec![
        (
            "realign.schema.json",
            gen(schemars::schema_for!(spec::OrgFile)),
        ),
        (
            "territory.schema.json",
            gen(schemars::schema_for!(spec::TerritoryFile)),
        ),
        ("plan.schema.json", gen(schemars::schema_for!(plan::Plan))),
    ]
}

fn schema(args: SchemaArgs) -> Result<Exit> {
    let mut stale = Vec::new();
    for (name, text) in schemas() {
        let path = args.out.join(name);
        if args.check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(path.display().to_string());
            }
        } else {
            write_atomic(&path, text.as_bytes())?;
            crate::say!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        bail!(
            "stale schemas: {} differ from what this realign generates; run `realign schema` and commit the result",
            stale.join(", ")
        );
    }
    Ok(Exit::Success)
}

async fn explain(account: &str, dir: &Path) -> Result<Exit> {
    let id = spec::Id::parse(account).map_err(|e| anyhow!("{e}"))?;
    let spec = load_spec(dir)?;
    let session = Session::connect(&spec).await?;
    let (rule_fields, field) = read_request(&spec);
    let req = ReadRequest {
        module: spec.org.module,
        territory_field: field.as_deref(),
        rule_fields: &rule_fields,
    };
    let found = match spec.org.mode {
        spec::Mode::Field => {
            records::fetch_ids(&session.client, &req, std::slice::from_ref(&id)).await
        }
        // One record with every field: its memberships carry `$assigned` for sure.
        spec::Mode::Native => records::fetch_one(&session.client, &req, &id)
            .await
            .map(|r| plan::OrgState {
                records: r.into_iter().collect(),
                territories: Vec::new(),
            }),
    };
    session.close().await?;
    let org = found?;
    let Some(rec) = org.records.first() else {
        bail!(
            "no {} record has id `{id}` in the org: check the id",
            spec.org.module
        );
    };
    out(&crate::plan::explain::explain(&spec, rec))?;
    Ok(Exit::Success)
}

async fn import_cmd(args: crate::cli::ImportArgs) -> Result<Exit> {
    use crate::spec::types::{Guardrails, OrgFile, Pacing, Unmatched, ZohoSettings};
    use crate::spec::{Mode, Module};
    let mode = match args.mode.trim().to_ascii_lowercase().as_str() {
        "field" => Mode::Field,
        "native" => Mode::Native,
        other => bail!("--mode `{other}`: use field or native"),
    };
    let module = match args.module.trim().to_ascii_lowercase().as_str() {
        "accounts" => Module::Accounts,
        "contacts" => Module::Contacts,
        "leads" => Module::Leads,
        "deals" => Module::Deals,
        other => bail!("--module `{other}`: use Accounts, Contacts, Leads or Deals"),
    };
    crate::zoho::records::check_field_name(&args.field)?;
    let has_yaml = std::fs::read_dir(&args.out)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.ends_with(".yaml") || n.ends_with(".yml") || e.path().is_dir()
        });
    if has_yaml && !args.force {
        bail!(
            "`{}` already holds a spec: import into a new directory (`--out DIR`), or pass --force to overwrite its files",
            args.out.display()
        );
    }
    let org_file = OrgFile {
        module,
        mode,
        field: (mode == Mode::Field).then(|| args.field.clone()),
        zoho: ZohoSettings::default(),
        exclusive: true,
        unmatched: Unmatched::Keep,
        guardrails: Guardrails::default(),
        pacing: Pacing::default(),
        freeze: Vec::new(),
    };
    let spec = Spec {
        root: args.out.clone(),
        org: org_file,
        territories: Vec::new(),
        digest: String::new(),
    };
    let session = Session::connect(&spec).await?;
    let fetched = fetch(&session.client, &spec).await;
    session.close().await?;
    let org = fetched?;
    let dc = std::env::var("ZOHO_DC")
        .ok()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| "us".into());
    let files = crate::import::render(
        &org,
        &crate::import::ImportSettings {
            module,
            mode,
            field: args.field.clone(),
            dc,
            edition: spec.org.zoho.edition.unwrap_or_default().to_string(),
        },
    );
    for (name, text) in &files {
        write_atomic(&args.out.join(name), text.as_bytes())?;
        out(&format!("{}\n", args.out.join(name).display()))?;
    }
    crate::say!(
        "imported {} territories holding {} of {} {} into {}; `realign plan {}` shows no changes",
        files.len() - 1,
        org.records
            .iter()
            .filter(|r| r.territory.is_some() || !r.memberships.is_empty())
            .count(),
        org.records.len(),
        module,
        args.out.display(),
        args.out.display()
    );
    Ok(Exit::Success)
}

async fn sandbox_cmd(args: SandboxArgs) -> Result<Exit> {
    let config = sandbox_config(&args)?;
    if !args.listen.ip().is_loopback() {
        crate::say!(
            "warning: the sandbox listens on {}, not loopback: anyone who can reach it can use it",
            args.listen
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on `{}`: is another sandbox running? pick another --listen port",
                args.listen
            )
        })?;
    let base = format!("http://{}", listener.local_addr()?);
    let announce = base.clone();
    sandbox::serve_when_ready(listener, config, crate::reconcile::shutdown_signal(), move || {
        // Only once the org is loaded: a corrupt state file fails before anything is printed.
        let _ = out(&format!("{}\n", sandbox::env_lines(&announce)));
        crate::say!("sandbox serving a Zoho CRM v8 org at {announce} (stats at {announce}/__sandbox/stats); Ctrl-C stops it");
    })
    .await?;
    Ok(Exit::Success)
}

fn sandbox_config(args: &SandboxArgs) -> Result<SandboxConfig> {
    Ok(SandboxConfig {
        seed: args.seed.parse().map_err(|e| anyhow!("--seed: {e}"))?,
        edition: args
            .edition
            .parse()
            .map_err(|e| anyhow!("--edition: {e}"))?,
        state_file: args.state.clone(),
        headers: args
            .headers
            .parse()
            .map_err(|e| anyhow!("--headers: {e}"))?,
        faults: match &args.faults {
            Some(p) => sandbox::Faults::from_file(p)?,
            None => sandbox::Faults::default(),
        },
        accounts: args.accounts,
        token_ttl: std::time::Duration::from_secs(args.token_ttl.max(1)),
        schedule_territory_jobs: args.schedule_territory_jobs,
        ..SandboxConfig::default()
    })
}

async fn demo(args: DemoArgs) -> Result<Exit> {
    let started = Instant::now();
    let spec = load_spec(&args.dir)?;
    let edition = spec.org.zoho.edition.unwrap_or_default();
    let handle = sandbox::start(SandboxConfig {
        edition,
        ..SandboxConfig::default()
    })
    .await?;
    crate::say!(
        "demo: an in-process sandbox org (seed `demo`, {edition} edition) at {}, and the spec in {}",
        handle.base_url(),
        args.dir.display()
    );
    let client = Arc::new(Client::new(
        sandbox_connection(&handle),
        edition,
        spec.org.pacing.concurrency,
    )?);
    let target = PlanTarget {
        api_domain: client.api_domain().await?,
        org: None,
        sandbox: true,
    };
    let result = async {
        out("\n== 1. plan\n")?;
        let org = fetch(&client, &spec).await?;
        let first = make_plan(&spec, &org, &target)?;
        out(&demo_overview(&first))?;
        out("\n== 2. apply\n")?;
        let report = run_apply(client.clone(), &first, &spec).await?;
        let exit = report_exit(&report, &first);
        out(&format!(
            "applied {} changes in {} write calls of up to {} records\n",
            render::thousands(report.applied.len() as u64),
            first.cost.write_calls,
            first.cost.batch_size
        ))?;
        out("\n== 3. plan again\n")?;
        let org = fetch(&client, &spec).await?;
        let second = make_plan(&spec, &org, &target)?;
        out(&format!("{}\n", render::summary_line(&second)))?;
        Ok::<_, anyhow::Error>((first, second, exit))
    }
    .await;
    let stats = handle.stats().await;
    handle.shutdown().await?;
    let (first, second, exit) = result?;
    let api_calls: u64 = stats
        .by_endpoint
        .iter()
        .filter(|(k, _)| !k.contains("/oauth/"))
        .map(|(_, v)| v)
        .sum();
    let mut cost = String::from("\n== API cost (counted by the sandbox)\n");
    cost.push_str(&format!(
        "calls      {api_calls} API + {} token\n",
        stats.requests - api_calls
    ));
    for (k, v) in &stats.by_endpoint {
        cost.push_str(&format!("             {v:>5}  {k}\n"));
    }
    cost.push_str(&format!(
        "429s       {}\ncredits    {}\nin flight  {} at most\nwall time  {:.2} s\n",
        stats.throttled,
        stats.credits_used,
        stats.max_in_flight,
        started.elapsed().as_secs_f64()
    ));
    cost.push_str(&format!(
        "one call per account would have been {} PUT calls for the same {} changes\n",
        render::thousands(first.summary.changes),
        render::thousands(first.summary.changes)
    ));
    out(&cost)?;
    if second.summary.changes != 0 {
        bail!(
            "the re-plan still shows {} changes after apply: the org did not converge",
            second.summary.changes
        );
    }
    Ok(exit)
}

/// Per-territory counts and the summary: the demo's short form of a plan.
fn demo_overview(plan: &Plan) -> String {
    let mut into: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for c in &plan.changes {
        into.entry(c.after.clone().unwrap_or_else(|| "(cleared)".into()))
            .or_default()
            .0 += 1;
        if let Some(b) = &c.before.value {
            into.entry(b.clone()).or_default().1 += 1;
        }
    }
    let mut s = String::new();
    for (t, (plus, minus)) in into {
        s.push_str(&format!("  {t:<24} +{plus:<4} -{minus}\n"));
    }
    for c in plan.changes.iter().take(5) {
        s.push_str(&format!("  e.g. {}\n", render::change_line(c)));
    }
    s.push_str(&render::summary_line(plan));
    s.push('\n');
    s
}
