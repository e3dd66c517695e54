//! `realign explain`: why a record is, or would be, in its territory.

use std::fmt::Write as _;

use crate::spec::{ClaimSource, Resolution, Spec, Unmatched};

use super::types::{Assigned, Record};

pub fn explain(spec: &Spec, rec: &Record) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {} ({})",
        spec.org.module,
        rec.id,
        rec.name.as_deref().unwrap_or("no name")
    );
    let native = spec.org.mode == crate::spec::Mode::Native;
    let names: Vec<String> = rec.memberships.iter().map(|m| m.name.clone()).collect();
    let joined = names.join(", ");
    let current = if native {
        Some(joined.as_str()).filter(|j| !j.is_empty())
    } else {
        rec.territory.as_deref().filter(|t| !t.trim().is_empty())
    };
    let _ = writeln!(s, "  current:  {}", current.unwrap_or("(none)"));
    for m in &rec.memberships {
        let (who, what) = match m.assigned {
            Assigned::Manually => (
                "manually",
                "realign may change it if the spec declares the territory",
            ),
            Assigned::Automatically => ("by a Zoho territory rule", "realign never removes it"),
            Assigned::Unknown => ("by an unknown hand", "Zoho did not say"),
        };
        let declared = if spec.territory_by_name(&m.name).is_some() {
            ""
        } else {
            ", not declared in the spec"
        };
        let _ = writeln!(
            s,
            "  held:     {} ({}), assigned {who}{declared}: {what}",
            m.name, m.id
        );
    }
    match spec.resolve(&rec.id, &rec.fields) {
        Resolution::Claimed { winner, losers } => {
            let t = &spec.territories[winner.territory];
            let there = if native {
                rec.memberships
                    .iter()
                    .any(|m| m.name.eq_ignore_ascii_case(&t.name))
            } else {
                current == Some(t.name.as_str())
            };
            let _ = writeln!(
                s,
                "  desired:  {}{}",
                t.name,
                if there { " (already there)" } else { "" }
            );
            let _ = writeln!(
                s,
                "  claimed by {} (priority {})",
                t.describe(&winner.source),
                t.priority
            );
            for l in losers {
                let lt = &spec.territories[l.territory];
                let why = match (&winner.source, &l.source) {
                    (ClaimSource::ExplicitId, ClaimSource::Rule(_)) => {
                        "an explicit id beats every rule".to_string()
                    }
                    _ => format!("priority {} is below {}", l.priority, winner.priority),
                };
                let _ = writeln!(
                    s,
                    "  lost:     {} by {}: {why}",
                    lt.name,
                    lt.describe(&l.source)
                );
            }
        }
        Resolution::Unclaimed { excluded_by } => {
            let desired = match spec.org.unmatched {
                Unmatched::Keep => format!(
                    "{} (no territory claims it; unmatched: keep)",
                    current.unwrap_or("(none)")
                ),
                Unmatched::Clear => {
                    "(none): no territory claims it, and unmatched: clear".to_string()
                }
            };
            let _ = writeln!(s, "  desired:  {desired}");
            for ti in excluded_by {
                let t = &spec.territories[ti];
                let _ = writeln!(
                    s,
                    "  excluded: {} ({}): its rules match, but its `exclude` takes the record out",
                    t.name,
                    t.file.display()
                );
            }
        }
        Resolution::Ambiguous { first, second } => {
            let _ = writeln!(s, "  desired:  ambiguous, plans fail until this is fixed");
            let _ = writeln!(s, "  {}", spec.ambiguity(&rec.id, &first, &second));
        }
    }
    if !rec.fields.is_empty() {
        let fields: Vec<String> = rec
            .fields
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        let _ = writeln!(s, "  fields:   {}", fields.join(", "));
    }
    s
}
