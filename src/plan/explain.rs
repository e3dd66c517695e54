//! `realign explain`: why a record is, or would be, in its territory.

use std::fmt::Write as _;

use crate::spec::{ClaimSource, Resolution, Spec, Unmatched};

use super::types::Record;

pub fn explain(spec: &Spec, rec: &Record) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {} ({})",
        spec.org.module,
        rec.id,
        rec.name.as_deref().unwrap_or("no name")
    );
    let current = rec.territory.as_deref().filter(|t| !t.trim().is_empty());
    let _ = writeln!(s, "  current:  {}", current.unwrap_or("(none)"));
    match spec.resolve(&rec.id, &rec.fields) {
        Resolution::Claimed { winner, losers } => {
            let t = &spec.territories[winner.territory];
            let _ = writeln!(
                s,
                "  desired:  {}{}",
                t.name,
                if current == Some(t.name.as_str()) {
                    " (no change)"
                } else {
                    ""
                }
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
