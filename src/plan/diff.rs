//! The diff: for each record, what the spec wants against what the org holds.

use crate::spec::{Diagnostic, Resolution, Spec, Unmatched};

use crate::spec::Mode;

use super::types::{
    Before, Change, ChangeKind, Cost, OrgState, Plan, SpecInfo, Summary, Target, FORMAT_VERSION,
};

/// Records per `PUT /{module}` call: the endpoint's documented maximum (reference §3.1).
pub const UPDATE_BATCH_MAX: usize = 100;
/// Rows per COQL call (reference §6).
pub const COQL_PAGE_MAX: usize = 2000;

/// What the plan is made for, beyond the spec and the org: where it runs.
#[derive(Debug, Clone)]
pub struct PlanContext {
    pub target: Target,
    pub git_commit: Option<String>,
}

/// Diffs `org` against `spec`. Ambiguous records are errors (all of them listed),
/// never guessed.
pub fn diff(spec: &Spec, org: &OrgState, ctx: &PlanContext) -> Result<Plan, Vec<Diagnostic>> {
    if spec.org.mode == Mode::Native {
        return super::native::diff(spec, org, ctx);
    }
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    let mut summary = Summary {
        records: org.records.len() as u64,
        ..Summary::default()
    };
    let mut spelling: std::collections::HashMap<String, String> = Default::default();
    for rec in &org.records {
        if let Some(v) = rec
            .territory
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            spelling
                .entry(v.to_lowercase())
                .or_insert_with(|| v.to_string());
        }
    }
    for rec in &org.records {
        let current = rec
            .territory
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let (desired, reason) = match spec.resolve(&rec.id, &rec.fields) {
            Resolution::Claimed { winner, .. } => {
                let t = &spec.territories[winner.territory];
                (Some(t.name.as_str()), t.describe(&winner.source))
            }
            Resolution::Unclaimed { .. } => match spec.org.unmatched {
                Unmatched::Keep => {
                    summary.unmatched_kept += 1;
                    continue;
                }
                Unmatched::Clear => (
                    None,
                    "no territory claims it (unmatched: clear)".to_string(),
                ),
            },
            Resolution::Ambiguous { first, second } => {
                errors.push(spec.ambiguity(&rec.id, &first, &second));
                continue;
            }
        };
        // Picklist values compare without case: `DACH` in Zoho is the spec's `Dach`, and
        // is written in the org's own spelling, which the field is sure to accept.
        let desired = desired.map(|d| {
            spelling
                .get(&d.to_lowercase())
                .map(String::as_str)
                .unwrap_or(d)
        });
        if current.map(str::to_lowercase) == desired.map(str::to_lowercase) {
            summary.unchanged += 1;
            continue;
        }
        let kind = match (current, desired) {
            (None, Some(_)) => ChangeKind::Assign,
            (Some(_), None) => ChangeKind::Clear,
            _ => ChangeKind::Move,
        };
        match kind {
            ChangeKind::Move => summary.moves += 1,
            ChangeKind::Assign => summary.assigns += 1,
            ChangeKind::Clear => summary.clears += 1,
        }
        changes.push(Change {
            account_id: rec.id.clone(),
            name: rec.name.clone(),
            kind,
            before: Before {
                value: rec.territory.clone(),
                modified_time: rec.modified_time.clone(),
                territories: Vec::new(),
            },
            after: desired.map(str::to_string),
            reason,
            assign: Vec::new(),
            remove: Vec::new(),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    summary.changes = changes.len() as u64;
    sort_changes(&mut changes);
    let batch = spec
        .org
        .pacing
        .batch_size
        .unwrap_or(UPDATE_BATCH_MAX)
        .clamp(1, UPDATE_BATCH_MAX);
    let cost = estimate(org.records.len(), &changes, batch);
    let mut plan = assemble(spec, ctx, summary, cost, changes);
    plan.territories = territory_counts(spec, org, &plan, None);
    plan.notes = missing_ids(spec, org);
    Ok(plan)
}

/// Explicit ids that no record in the org has: a typo, or a deleted record. Planned as
/// nothing, but said, so a reviewer sees it.
pub(super) fn missing_ids(spec: &Spec, org: &OrgState) -> Vec<String> {
    let present: std::collections::HashSet<&crate::spec::Id> =
        org.records.iter().map(|r| &r.id).collect();
    let mut notes = Vec::new();
    let mut more = 0;
    for t in &spec.territories {
        for id in t.ids.iter().filter(|id| !present.contains(id)) {
            if notes.len() < 20 {
                notes.push(format!(
                    "{} lists id `{id}`, which no {} record has: a typo, or a deleted record?",
                    t.file.display(),
                    spec.org.module
                ));
            } else {
                more += 1;
            }
        }
    }
    if more > 0 {
        notes.push(format!("... and {more} more listed ids no record has"));
    }
    notes
}

/// Records per declared territory before the plan, and after it. `refs` are the Zoho
/// territories in native mode (counted by id); field mode counts by the field's value.
pub(super) fn territory_counts(
    spec: &Spec,
    org: &OrgState,
    plan: &Plan,
    refs: Option<&[crate::plan::TerritoryRef]>,
) -> Vec<crate::plan::types::TerritoryCount> {
    use std::collections::HashMap;
    let key = |name: &str| name.trim().to_lowercase();
    let mut before: HashMap<String, i64> = HashMap::new();
    let mut after: HashMap<String, i64> = HashMap::new();
    match refs {
        None => {
            for r in &org.records {
                if let Some(v) = &r.territory {
                    *before.entry(key(v)).or_default() += 1;
                }
            }
            after.clone_from(&before);
            for c in &plan.changes {
                if let Some(v) = &c.before.value {
                    *after.entry(key(v)).or_default() -= 1;
                }
                if let Some(v) = &c.after {
                    *after.entry(key(v)).or_default() += 1;
                }
            }
        }
        Some(refs) => {
            let name_of: HashMap<&crate::spec::Id, String> = refs
                .iter()
                .zip(&spec.territories)
                .map(|(r, t)| (&r.id, key(&t.name)))
                .collect();
            for r in &org.records {
                for m in &r.memberships {
                    if let Some(n) = name_of.get(&m.id) {
                        *before.entry(n.clone()).or_default() += 1;
                    }
                }
            }
            after.clone_from(&before);
            for c in &plan.changes {
                for t in &c.remove {
                    if let Some(n) = name_of.get(&t.id) {
                        *after.entry(n.clone()).or_default() -= 1;
                    }
                }
                for t in &c.assign {
                    if let Some(n) = name_of.get(&t.id) {
                        *after.entry(n.clone()).or_default() += 1;
                    }
                }
            }
        }
    }
    spec.territories
        .iter()
        .map(|t| crate::plan::types::TerritoryCount {
            name: t.name.clone(),
            before: before.get(&key(&t.name)).copied().unwrap_or(0).max(0) as u64,
            after: after.get(&key(&t.name)).copied().unwrap_or(0).max(0) as u64,
            protected: t.protected,
        })
        .collect()
}

/// Refuses a plan that would empty a territory marked `protected: true`. Not lifted by
/// `--allow-large-change`: change the spec instead.
pub fn check_protected(plan: &Plan) -> Result<(), String> {
    match plan.territories.iter().find(|t| t.protected && t.before > 0 && t.after == 0) {
        Some(t) => Err(format!(
            "the plan would empty `{}` ({} records now), which the spec marks `protected: true`: fix the spec, or remove `protected` from that territory if emptying it is meant",
            t.name, t.before
        )),
        None => Ok(()),
    }
}

/// A plan around its changes, with the spec and target it was made for.
pub(super) fn assemble(
    spec: &Spec,
    ctx: &PlanContext,
    summary: Summary,
    cost: Cost,
    changes: Vec<crate::plan::Change>,
) -> Plan {
    Plan {
        format_version: FORMAT_VERSION,
        realign_version: env!("CARGO_PKG_VERSION").to_string(),
        spec: SpecInfo {
            dir: spec.root.display().to_string(),
            digest: spec.digest.clone(),
            git_commit: ctx.git_commit.clone(),
        },
        target: ctx.target.clone(),
        module: spec.org.module,
        mode: spec.org.mode,
        field: spec.org.field.clone(),
        summary,
        cost,
        changes,
        held_by_rules: Vec::new(),
        notes: Vec::new(),
        declared: Vec::new(),
        territories: Vec::new(),
    }
}

/// Destination territory by name (clears last), then record id in numeric order.
pub fn sort_changes(changes: &mut [Change]) {
    changes.sort_by(|a, b| {
        let ka = (
            a.after.is_none(),
            a.after.clone(),
            a.account_id.numeric_key(),
        );
        let kb = (
            b.after.is_none(),
            b.after.clone(),
            b.account_id.numeric_key(),
        );
        ka.cmp(&kb)
    });
}

/// The calls and credits an apply of these changes takes: one full read by COQL pages
/// (3 credits a page of up to 2,000) and ceil(changes / batch) writes (1 credit per 10
/// records, reference §8.1).
pub fn estimate(records: usize, changes: &[Change], batch: usize) -> Cost {
    let read_calls = records.div_ceil(COQL_PAGE_MAX).max(1) as u64;
    let write_calls = changes.len().div_ceil(batch) as u64;
    let write_credits: u64 = changes
        .chunks(batch)
        .map(|c| c.len().div_ceil(10) as u64)
        .sum();
    Cost {
        read_calls,
        write_calls,
        batch_size: batch as u64,
        credits: read_calls * 3 + write_credits,
        write_credits,
    }
}

/// Checks a plan against the guardrails; the error names the limit, the figure and by
/// how much it is over.
pub fn check_guardrails(plan: &Plan, g: &crate::spec::types::Guardrails) -> Result<(), String> {
    check_protected(plan)?;
    let changes = plan.summary.changes;
    if let Some(max) = g.max_changes {
        if changes > max {
            return Err(format!(
                "the plan changes {changes} records, {} over the `max_changes` guardrail of {max} in realign.yaml: review it, then pass --allow-large-change to apply it anyway",
                changes - max
            ));
        }
    }
    if let Some(ratio) = g.max_change_ratio {
        let records = plan.summary.records.max(1);
        let share = changes as f64 / records as f64;
        if share > ratio {
            return Err(format!(
                "the plan changes {changes} of {records} records ({:.1}%), over the `max_change_ratio` guardrail of {:.1}% in realign.yaml by {:.1} points: review it, then pass --allow-large-change to apply it anyway",
                share * 100.0,
                ratio * 100.0,
                (share - ratio) * 100.0
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::types::Guardrails;

    fn plan_with(records: u64, changes: u64) -> Plan {
        let mut p = crate::plan::render::tests::sample_plan(0);
        p.summary.records = records;
        p.summary.changes = changes;
        p
    }

    #[test]
    fn guardrails_name_the_limit_the_figure_and_the_excess() {
        let g = Guardrails {
            max_changes: Some(100),
            max_change_ratio: Some(0.25),
        };
        assert!(check_guardrails(&plan_with(1000, 100), &g).is_ok());
        let e = check_guardrails(&plan_with(1000, 130), &g).unwrap_err();
        assert!(
            e.contains("130 records, 30 over the `max_changes` guardrail of 100"),
            "{e}"
        );
        let g = Guardrails {
            max_changes: None,
            max_change_ratio: Some(0.25),
        };
        let e = check_guardrails(&plan_with(200, 60), &g).unwrap_err();
        assert!(
            e.contains("(30.0%)") && e.contains("25.0%") && e.contains("5.0 points"),
            "{e}"
        );
    }

    #[test]
    fn a_protected_territory_may_not_be_emptied() {
        let mut p = plan_with(10, 3);
        p.territories = vec![crate::plan::types::TerritoryCount {
            name: "Japan".into(),
            before: 3,
            after: 0,
            protected: true,
        }];
        let e = check_protected(&p).unwrap_err();
        assert!(e.contains("`Japan`") && e.contains("protected"), "{e}");
        p.territories[0].after = 1;
        assert!(check_protected(&p).is_ok());
    }
}
