//! Renderings of a plan: text for people, JSON for machines, markdown for pull requests.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::types::{Change, ChangeKind, Plan};

/// Groups changes by destination territory; `None` is "cleared".
fn by_destination(plan: &Plan) -> BTreeMap<(bool, String), Vec<&Change>> {
    let mut groups: BTreeMap<(bool, String), Vec<&Change>> = BTreeMap::new();
    for c in &plan.changes {
        let key = match &c.after {
            Some(t) => (false, t.clone()),
            None => (true, String::new()),
        };
        groups.entry(key).or_default().push(c);
    }
    groups
}

/// Records leaving each territory, for the `−N` in group headers.
fn leaving(plan: &Plan) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for c in &plan.changes {
        if let Some(b) = &c.before.value {
            *out.entry(b.trim().to_string()).or_insert(0) += 1;
        }
    }
    out
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The one-line summary: what changes, what stays, what it costs.
pub fn summary_line(plan: &Plan) -> String {
    let s = &plan.summary;
    let c = &plan.cost;
    let mut line = if s.changes == 0 {
        format!(
            "No changes: {} records match the spec",
            thousands(s.unchanged)
        )
    } else {
        format!(
            "Plan: {} to change ({} move, {} assign, {} clear), {} unchanged",
            thousands(s.changes),
            thousands(s.moves),
            thousands(s.assigns),
            thousands(s.clears),
            thousands(s.unchanged)
        )
    };
    if s.unmatched_kept > 0 {
        let _ = write!(line, ", {} unmatched kept", thousands(s.unmatched_kept));
    }
    let _ = write!(
        line,
        ". Cost: {} read call{}, {} write call{} ({} records a call), {} credits",
        c.read_calls,
        plural(c.read_calls),
        c.write_calls,
        plural(c.write_calls),
        c.batch_size,
        thousands(c.credits)
    );
    line
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn value(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("(none)")
}

fn mark(kind: ChangeKind) -> char {
    match kind {
        ChangeKind::Move => '~',
        ChangeKind::Assign => '+',
        ChangeKind::Clear => '-',
    }
}

/// Text for a terminal: changes grouped by destination territory, summary last.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let field = plan.field.as_deref().unwrap_or("Territories");
    let _ = writeln!(
        out,
        "{} in {} mode (`{}`), {} records, target {}{}",
        plan.module,
        match plan.mode {
            crate::spec::Mode::Field => "field",
            crate::spec::Mode::Native => "native",
        },
        field,
        thousands(plan.summary.records),
        plan.target.api_domain,
        if plan.target.sandbox { " (embedded sandbox)" } else { "" }
    );
    let leaving = leaving(plan);
    for ((cleared, name), changes) in by_destination(plan) {
        out.push('\n');
        if cleared {
            let _ = writeln!(out, "Cleared ({}):", changes.len());
        } else {
            let gone = leaving.get(&name).copied().unwrap_or(0);
            let _ = writeln!(out, "{name} (+{} -{gone}):", changes.len());
        }
        for c in changes {
            let _ = writeln!(
                out,
                "  {} {}  {}  {} -> {}  [{}]",
                mark(c.kind),
                c.account_id,
                c.name.as_deref().unwrap_or("-"),
                value(&c.before.value),
                value(&c.after),
                c.reason
            );
        }
    }
    out.push('\n');
    out.push_str(&summary_line(plan));
    out.push('\n');
    out
}

/// The plan as pretty JSON (the plan file format).
pub fn json(plan: &Plan) -> String {
    let mut s = serde_json::to_string_pretty(plan).expect("a plan always serialises");
    s.push('\n');
    s
}

/// A pull-request comment: summary first, then one collapsible section per territory.
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### realign plan\n\n**{}**\n", summary_line(plan));
    let leaving = leaving(plan);
    for ((cleared, name), changes) in by_destination(plan) {
        let title = if cleared {
            format!("Cleared: {}", changes.len())
        } else {
            let gone = leaving.get(&name).copied().unwrap_or(0);
            format!("{name}: +{} -{gone}", changes.len())
        };
        let _ = writeln!(out, "<details><summary>{}</summary>\n\n```diff", escape(&title));
        for c in changes {
            let _ = writeln!(
                out,
                "{} {} {} ({} -> {})",
                if cleared { '-' } else { '+' },
                c.account_id,
                c.name.as_deref().unwrap_or("-"),
                value(&c.before.value),
                value(&c.after)
            );
        }
        let _ = writeln!(out, "```\n</details>\n");
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(2500), "2,500");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
