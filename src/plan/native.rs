//! The diff in native mode: Zoho Territory Management's membership lists.
//!
//! realign owns only memberships in territories the spec declares, and of those only the
//! ones assigned `manually`. A membership a Zoho territory rule holds (`automatically`)
//! cannot be removed through the API; the plan lists it instead of fighting it. A move is
//! an assign and a remove: assigns go first, so a record is briefly in two territories
//! rather than briefly in none (in none it drops out of territory-based sharing, reports
//! and forecasts, and a run killed between the steps would leave it there).

use std::collections::{BTreeSet, HashMap};

use crate::spec::{Diagnostic, Id, Module, Resolution, Spec, Unmatched};

use super::diff::{assemble, sort_changes, PlanContext};
use super::types::{
    Assigned, Before, Change, ChangeKind, Cost, HeldByRule, OrgState, OrgTerritory, Plan, Summary,
    TerritoryRef,
};

/// Records per assign/remove call (reference §4.2).
pub const ACTION_BATCH_MAX: usize = 10;
/// Records per Get Records page (reference §2.1).
pub const GET_PAGE_MAX: usize = 200;

/// Territories one record may hold (reference §4.5).
pub fn membership_cap(module: Module) -> usize {
    match module {
        Module::Deals => 1,
        _ => 10,
    }
}

/// Resolves every spec territory to a Zoho territory: by pinned id, else by name.
/// An unknown territory is an error before anything is written.
pub fn resolve_territories(
    spec: &Spec,
    org: &[OrgTerritory],
) -> Result<Vec<TerritoryRef>, Vec<Diagnostic>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for t in &spec.territories {
        let found = match &t.id {
            Some(id) => org.iter().find(|z| &z.id == id),
            None => org
                .iter()
                .find(|z| z.name.trim().eq_ignore_ascii_case(t.name.trim())),
        };
        match found {
            Some(z) => out.push(TerritoryRef {
                id: z.id.clone(),
                name: z.name.clone(),
            }),
            None => errors.push(Diagnostic::new(
                &t.file,
                t.line,
                1,
                match &t.id {
                    Some(id) => format!(
                        "territory `{}` is pinned to id `{id}`, which the org does not have: fix the id or remove it to match by name",
                        t.name
                    ),
                    None => format!(
                        "the org has no territory named `{}`: create it in Zoho (Setup > Territory Management) or pin its `id`",
                        t.name
                    ),
                },
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Hierarchy notes: a spec `parent` that differs from Zoho's `reporting_to`.
fn hierarchy_notes(spec: &Spec, refs: &[TerritoryRef], org: &[OrgTerritory]) -> Vec<String> {
    let by_id: HashMap<&Id, &OrgTerritory> = org.iter().map(|z| (&z.id, z)).collect();
    let mut notes = Vec::new();
    for (t, r) in spec.territories.iter().zip(refs) {
        let Some(z) = by_id.get(&r.id) else { continue };
        // A territory reporting to the org's root counts as having no parent.
        let zoho_parent = z
            .parent
            .as_ref()
            .filter(|p| by_id.get(&p.id).is_none_or(|pz| pz.parent.is_some()));
        let same = match (&t.parent, zoho_parent) {
            (None, None) => true,
            (Some(a), Some(b)) => a.trim().eq_ignore_ascii_case(b.name.trim()),
            _ => false,
        };
        if !same {
            notes.push(format!(
                "hierarchy: `{}` reports to `{}` in Zoho, but {} says parent `{}`",
                t.name,
                zoho_parent.map(|p| p.name.as_str()).unwrap_or("(the root)"),
                t.file.display(),
                t.parent.as_deref().unwrap_or("(none)")
            ));
        }
    }
    notes
}

fn joined(names: &BTreeSet<String>) -> Option<String> {
    (!names.is_empty()).then(|| names.iter().cloned().collect::<Vec<_>>().join(", "))
}

pub fn diff(spec: &Spec, org: &OrgState, ctx: &PlanContext) -> Result<Plan, Vec<Diagnostic>> {
    let refs = resolve_territories(spec, &org.territories)?;
    let declared: HashMap<&Id, usize> = refs.iter().enumerate().map(|(i, r)| (&r.id, i)).collect();
    let cap = membership_cap(spec.org.module);
    let mut errors = Vec::new();
    let mut changes = Vec::new();
    let mut held = Vec::new();
    let mut notes = hierarchy_notes(spec, &refs, &org.territories);
    notes.extend(super::diff::missing_ids(spec, org));
    let mut summary = Summary {
        records: org.records.len() as u64,
        ..Summary::default()
    };
    for rec in &org.records {
        let (wanted, reason): (Vec<usize>, String) = match spec.resolve(&rec.id, &rec.fields) {
            Resolution::Claimed { winner, losers } => {
                let t = &spec.territories[winner.territory];
                let mut all = vec![winner.territory];
                if !spec.org.exclusive {
                    all.extend(losers.iter().map(|l| l.territory));
                }
                (all, t.describe(&winner.source))
            }
            Resolution::Unclaimed { .. } => match spec.org.unmatched {
                Unmatched::Keep => {
                    summary.unmatched_kept += 1;
                    continue;
                }
                Unmatched::Clear => (
                    Vec::new(),
                    "no territory claims it (unmatched: clear)".to_string(),
                ),
            },
            Resolution::Ambiguous { first, second } => {
                if spec.org.exclusive {
                    errors.push(spec.ambiguity(&rec.id, &first, &second));
                    continue;
                }
                let t = &spec.territories[first.territory];
                (
                    vec![first.territory, second.territory],
                    t.describe(&first.source),
                )
            }
        };
        let wanted_ids: BTreeSet<&Id> = wanted.iter().map(|i| &refs[*i].id).collect();
        let current: Vec<_> = rec
            .memberships
            .iter()
            .filter(|m| declared.contains_key(&m.id))
            .collect();
        let current_ids: BTreeSet<&Id> = current.iter().map(|m| &m.id).collect();
        summary.rule_assigned += current
            .iter()
            .filter(|m| m.assigned == Assigned::Automatically)
            .count() as u64;
        let assign: Vec<TerritoryRef> = wanted
            .iter()
            .map(|i| &refs[*i])
            .filter(|r| !current_ids.contains(&r.id))
            .cloned()
            .collect();
        let mut remove = Vec::new();
        for m in current.iter().filter(|m| !wanted_ids.contains(&m.id)) {
            let r = TerritoryRef {
                id: m.id.clone(),
                name: m.name.clone(),
            };
            if m.assigned == Assigned::Automatically {
                held.push(HeldByRule {
                    account_id: rec.id.clone(),
                    name: rec.name.clone(),
                    territory: r,
                    wanted: joined(&wanted.iter().map(|i| refs[*i].name.clone()).collect()),
                });
            } else {
                remove.push(r);
            }
        }
        if assign.is_empty() && remove.is_empty() {
            summary.unchanged += 1;
            continue;
        }
        let after_count = rec.memberships.len() + assign.len() - remove.len();
        if after_count > cap {
            notes.push(format!(
                "record `{}` would hold {after_count} territories, over Zoho's limit of {cap} for {}: left as it is; remove some of its other memberships in Zoho",
                rec.id, spec.org.module
            ));
            continue;
        }
        // Losing an extra membership while keeping the right one is a move (from
        // "ANZ, India" to "ANZ"), not a clear: a clear leaves the record in none.
        let keeps_some = current.len() > remove.len();
        let kind = match (assign.is_empty(), remove.is_empty()) {
            (false, false) => ChangeKind::Move,
            (false, true) if current.is_empty() => ChangeKind::Assign,
            (false, true) => ChangeKind::Move,
            (true, _) if keeps_some => ChangeKind::Move,
            _ => ChangeKind::Clear,
        };
        match kind {
            ChangeKind::Move => summary.moves += 1,
            ChangeKind::Assign => summary.assigns += 1,
            ChangeKind::Clear => summary.clears += 1,
        }
        let before_names: BTreeSet<String> = current.iter().map(|m| m.name.clone()).collect();
        let after_names: BTreeSet<String> = current
            .iter()
            .filter(|m| !remove.iter().any(|r| r.id == m.id))
            .map(|m| m.name.clone())
            .chain(assign.iter().map(|r| r.name.clone()))
            .collect();
        changes.push(Change {
            account_id: rec.id.clone(),
            name: rec.name.clone(),
            kind,
            before: Before {
                value: joined(&before_names),
                modified_time: rec.modified_time.clone(),
                territories: rec.memberships.clone(),
            },
            after: joined(&after_names),
            reason,
            assign,
            remove,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    summary.changes = changes.len() as u64;
    summary.held_by_rules = held.len() as u64;
    sort_changes(&mut changes);
    held.sort_by(|a, b| a.account_id.numeric_key().cmp(&b.account_id.numeric_key()));
    let cost = estimate(org.records.len(), &changes);
    let mut plan = assemble(spec, ctx, summary, cost, changes);
    if spec.org.exclusive && !held.is_empty() {
        notes.push(format!(
            "{} records keep a membership a Zoho territory rule holds, beside the one the spec wants (exclusive: true): realign will not fight the rule; change the rule in Zoho, or the spec",
            held.len()
        ));
    }
    plan.held_by_rules = held;
    plan.notes = notes;
    plan.territories = super::diff::territory_counts(spec, org, &plan, Some(&refs));
    plan.declared = refs;
    Ok(plan)
}

/// Native cost: the territory list, Get Records pages of 200, then assign and remove
/// calls of up to 10 records; one credit each (reference §8.1).
pub fn estimate(records: usize, changes: &[Change]) -> Cost {
    let read_calls = 1 + records.div_ceil(GET_PAGE_MAX).max(1) as u64;
    let assigns = changes.iter().filter(|c| !c.assign.is_empty()).count();
    let removes = changes.iter().filter(|c| !c.remove.is_empty()).count();
    let write_calls =
        (assigns.div_ceil(ACTION_BATCH_MAX) + removes.div_ceil(ACTION_BATCH_MAX)) as u64;
    Cost {
        read_calls,
        write_calls,
        batch_size: ACTION_BATCH_MAX as u64,
        credits: read_calls + write_calls,
        write_credits: write_calls,
    }
}
