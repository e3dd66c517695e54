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
        if current == desired {
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
    Ok(assemble(spec, ctx, summary, cost, changes))
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
