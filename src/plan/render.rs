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
        for t in moves(c).1 {
            *out.entry(t).or_insert(0) += 1;
        }
    }
    out
}

/// Records entering each territory, for the `+N` in group headers.
fn entering(plan: &Plan) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for c in &plan.changes {
        for t in moves(c).0 {
            *out.entry(t).or_insert(0) += 1;
        }
    }
    out
}

/// The territories a change puts a record into and takes it out of: the field's old and
/// new value, or in native mode the memberships assigned and removed.
fn moves(c: &Change) -> (Vec<String>, Vec<String>) {
    if c.assign.is_empty() && c.remove.is_empty() {
        let trim = |v: &Option<String>| v.iter().map(|s| s.trim().to_string()).collect();
        (trim(&c.after), trim(&c.before.value))
    } else {
        let names = |l: &[crate::plan::TerritoryRef]| l.iter().map(|t| t.name.clone()).collect();
        (names(&c.assign), names(&c.remove))
    }
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
    if s.held_by_rules > 0 {
        let _ = write!(line, ", {} held by Zoho rules", thousands(s.held_by_rules));
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

/// One change on one line: `id name: before -> after [reason]`.
pub fn change_line(c: &Change) -> String {
    format!(
        "{} {}: {} -> {} [{}]",
        c.account_id,
        c.name.as_deref().unwrap_or("-"),
        value(&c.before.value),
        value(&c.after),
        c.reason
    )
}

/// Native mode: the two steps of a move, in the order they are sent.
fn steps(c: &Change) -> String {
    let names = |l: &[crate::plan::TerritoryRef]| {
        l.iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (c.assign.is_empty(), c.remove.is_empty()) {
        (false, false) => format!(
            "assign {}, then remove {}; ",
            names(&c.assign),
            names(&c.remove)
        ),
        (false, true) => format!("assign {}; ", names(&c.assign)),
        (true, false) => format!("remove {}; ", names(&c.remove)),
        (true, true) => String::new(),
    }
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
        if plan.target.sandbox {
            " (embedded sandbox)"
        } else {
            ""
        }
    );
    let leaving = leaving(plan);
    let entering = entering(plan);
    for ((cleared, name), changes) in by_destination(plan) {
        out.push('\n');
        if cleared {
            let _ = writeln!(out, "Cleared ({}):", changes.len());
        } else {
            let gone = leaving.get(&name).copied().unwrap_or(0);
            let came = entering.get(&name).copied().unwrap_or(0);
            let _ = writeln!(out, "{name} (+{came} -{gone}):");
        }
        for c in changes {
            let _ = writeln!(
                out,
                "  {} {}  {}  {} -> {}  [{}{}]",
                mark(c.kind),
                c.account_id,
                c.name.as_deref().unwrap_or("-"),
                value(&c.before.value),
                value(&c.after),
                steps(c),
                c.reason
            );
        }
    }
    out.push_str(&extras(plan));
    out.push('\n');
    out.push_str(&summary_line(plan));
    out.push('\n');
    out
}

/// Memberships Zoho rules hold and planning notes, for text and markdown alike.
fn extras(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.summary.rule_assigned > 0 || !plan.held_by_rules.is_empty() {
        let _ = writeln!(
            out,
            "\nHeld by Zoho territory rules: {} memberships in declared territories; realign never removes them.",
            thousands(plan.summary.rule_assigned)
        );
        if !plan.held_by_rules.is_empty() {
            let _ = writeln!(
                out,
                "Of these, {} differ from the spec and stay as they are:",
                plan.held_by_rules.len()
            );
        }
        for h in &plan.held_by_rules {
            let _ = writeln!(
                out,
                "  = {}  {}  in {} by a rule; the spec wants {}",
                h.account_id,
                h.name.as_deref().unwrap_or("-"),
                h.territory.name,
                h.wanted.as_deref().unwrap_or("(none)")
            );
        }
    }
    if !plan.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for n in &plan.notes {
            let _ = writeln!(out, "  ! {n}");
        }
    }
    out
}

/// The plan as pretty JSON (the plan file format).
pub fn json(plan: &Plan) -> String {
    let mut s = serde_json::to_string_pretty(plan).expect("a plan always serialises");
    s.push('\n');
    s
}

/// Characters a markdown plan aims to stay within; GitHub refuses comments over 65,536.
pub const MARKDOWN_BUDGET: usize = 60_000;
pub const MARKDOWN_HARD_LIMIT: usize = 65_536;

/// One territory's section: who enters and who leaves.
struct Section {
    title: String,
    entering: Vec<String>,
    leaving: Vec<String>,
}

fn sections(plan: &Plan) -> Vec<Section> {
    let line = |c: &Change| format!("{} {}", c.account_id, c.name.as_deref().unwrap_or("-"));
    let mut by: BTreeMap<(u8, String), Section> = BTreeMap::new();
    fn section<'a>(
        by: &'a mut BTreeMap<(u8, String), Section>,
        key: (u8, String),
        title: &str,
    ) -> &'a mut Section {
        by.entry(key).or_insert_with(|| Section {
            title: title.to_string(),
            entering: vec![],
            leaving: vec![],
        })
    }
    for c in &plan.changes {
        // Clears first, then territories by name.
        if c.after.is_none() {
            section(&mut by, (0, String::new()), "Cleared")
                .leaving
                .push(line(c));
        }
        let (into, out_of) = moves(c);
        for t in into {
            section(&mut by, (1, t.clone()), &t).entering.push(line(c));
        }
        for t in out_of {
            section(&mut by, (1, t.clone()), &t).leaving.push(line(c));
        }
    }
    by.into_values().collect()
}

/// A pull-request comment: the summary line first, then one collapsible section per
/// territory with a unified diff of its membership. Past [`MARKDOWN_BUDGET`] the sections
/// shrink to counts; the result never exceeds [`MARKDOWN_HARD_LIMIT`].
pub fn markdown(plan: &Plan) -> String {
    let target = if plan.target.sandbox {
        "\n> **Target: realign's embedded sandbox, not a Zoho org** (no Zoho credentials were set).\n".to_string()
    } else {
        format!(
            "\nTarget: `{}`{}\n",
            plan.target.api_domain,
            plan.target
                .org
                .as_deref()
                .map(|o| format!(", org `{o}`"))
                .unwrap_or_default()
        )
    };
    let head = format!("### realign plan\n\n**{}**\n{target}\n", summary_line(plan));
    let secs = sections(plan);
    let full: Vec<String> = secs.iter().map(section_full).collect();
    let total: usize = head.len() + full.iter().map(String::len).sum::<usize>();
    let mut out = head;
    let extra = extras(plan);
    if !extra.is_empty() && extra.len() < 20_000 {
        let _ = writeln!(out, "<details><summary>Held by Zoho rules, and notes</summary>\n\n```{extra}```\n</details>\n");
    }
    if out.len() + total <= MARKDOWN_BUDGET {
        for s in full {
            out.push_str(&s);
        }
        return out;
    }
    let note = "_The plan is too large to show every record here: sections show counts only. \
                The JSON plan (`realign plan --out plan.json`) is the full record._\n\n";
    out.push_str(note);
    let tail_reserve = 200;
    for (i, s) in secs.iter().enumerate() {
        let line = section_counts(s);
        if out.len() + line.len() + tail_reserve > MARKDOWN_BUDGET {
            let _ = writeln!(
                out,
                "\n… and {} more territories, listed in the JSON plan.",
                secs.len() - i
            );
            break;
        }
        out.push_str(&line);
    }
    debug_assert!(out.len() <= MARKDOWN_HARD_LIMIT);
    out
}

fn section_full(s: &Section) -> String {
    let mut before = s.leaving.clone();
    let mut after = s.entering.clone();
    before.sort();
    after.sort();
    let before = before.iter().map(|l| format!("{l}\n")).collect::<String>();
    let after = after.iter().map(|l| format!("{l}\n")).collect::<String>();
    let diff = similar::TextDiff::from_lines(&before, &after);
    let mut body = String::new();
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => ' ',
        };
        body.push(sign);
        body.push_str(change.value());
    }
    format!(
        "<details><summary>{}</summary>\n\n```diff\n{body}```\n</details>\n\n",
        escape(&counts_title(s))
    )
}

fn counts_title(s: &Section) -> String {
    format!("{}: +{} -{}", s.title, s.entering.len(), s.leaving.len())
}

fn section_counts(s: &Section) -> String {
    format!("- {}\n", escape(&counts_title(s)))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use crate::plan::types::{Before, ChangeKind, Cost, SpecInfo, Summary, Target};
    use crate::spec::{Id, Mode, Module};

    pub(crate) fn sample_plan(n: usize) -> Plan {
        let territories = ["DACH", "France", "Nordics", "Benelux"];
        let changes: Vec<Change> = (0..n)
            .map(|i| Change {
                account_id: Id::parse(&format!("{}", 5725767000000400001u64 + i as u64 * 13))
                    .unwrap(),
                name: Some(format!("Company number {i} GmbH")),
                kind: if i % 7 == 0 {
                    ChangeKind::Clear
                } else {
                    ChangeKind::Move
                },
                before: Before {
                    value: Some(territories[(i + 1) % 4].to_string()),
                    modified_time: Some("2026-11-02T09:14:07+00:00".into()),
                    territories: vec![],
                },
                after: (i % 7 != 0).then(|| territories[i % 4].to_string()),
                reason: "rule `x` in territories/x.yaml:5".into(),
                assign: vec![],
                remove: vec![],
            })
            .collect();
        Plan {
            format_version: 1,
            realign_version: "0.1.0".into(),
            spec: SpecInfo {
                dir: "territories".into(),
                digest: "sha256:00".into(),
                git_commit: None,
            },
            target: Target {
                api_domain: "http://127.0.0.1:1".into(),
                org: None,
                sandbox: true,
            },
            module: Module::Accounts,
            mode: Mode::Field,
            field: Some("Territory".into()),
            summary: Summary {
                records: 2500,
                changes: n as u64,
                moves: changes
                    .iter()
                    .filter(|c| c.kind == ChangeKind::Move)
                    .count() as u64,
                clears: changes
                    .iter()
                    .filter(|c| c.kind == ChangeKind::Clear)
                    .count() as u64,
                unchanged: 2500 - n as u64,
                ..Summary::default()
            },
            cost: Cost {
                read_calls: 2,
                write_calls: n.div_ceil(100) as u64,
                batch_size: 100,
                credits: 0,
                write_credits: 0,
            },
            changes,
            held_by_rules: vec![],
            notes: vec![],
            declared: vec![],
            territories: vec![],
        }
    }

    #[test]
    fn small_markdown_shows_every_record_in_a_diff() {
        let md = markdown(&sample_plan(20));
        assert!(
            md.starts_with("### realign plan\n\n**Plan: 20 to change"),
            "{md}"
        );
        assert!(md.contains("<details><summary>DACH: +"), "{md}");
        assert!(md.contains("```diff\n"), "{md}");
        assert!(
            md.contains("+5725767000000400001") || md.contains("-5725767000000400001"),
            "{md}"
        );
        // Clears come before the territories.
        assert!(
            md.find("Cleared").unwrap() < md.find("Benelux").unwrap(),
            "{md}"
        );
    }

    #[test]
    fn large_markdown_stays_within_the_budget_and_names_every_territory() {
        let md = markdown(&sample_plan(2500));
        assert!(md.len() <= MARKDOWN_HARD_LIMIT, "{}", md.len());
        assert!(md.contains("Plan: 2,500 to change"));
        for t in ["DACH", "France", "Nordics", "Benelux", "Cleared"] {
            assert!(md.contains(t), "{t} missing");
        }
        assert!(md.contains("JSON plan"));
    }

    /// A native-mode plan with a rule-held membership and a note.
    fn native_sample() -> Plan {
        let mut p = sample_plan(3);
        p.mode = Mode::Native;
        p.field = None;
        for c in &mut p.changes {
            c.assign = c
                .after
                .iter()
                .map(|n| crate::plan::TerritoryRef {
                    id: Id::parse("5725767000000200010").unwrap(),
                    name: n.clone(),
                })
                .collect();
            c.remove = c
                .before
                .value
                .iter()
                .map(|n| crate::plan::TerritoryRef {
                    id: Id::parse("5725767000000200011").unwrap(),
                    name: n.clone(),
                })
                .collect();
        }
        p.summary.rule_assigned = 7;
        p.summary.held_by_rules = 1;
        p.held_by_rules = vec![crate::plan::HeldByRule {
            account_id: Id::parse("5725767000000400027").unwrap(),
            name: Some("Horizon Textiles GmbH".into()),
            territory: crate::plan::TerritoryRef {
                id: Id::parse("5725767000000200012").unwrap(),
                name: "Nordics".into(),
            },
            wanted: Some("DACH".into()),
        }];
        p.notes = vec!["hierarchy: `Japan` reports to `APAC` in Zoho, but territories/apac/japan.yaml says parent `EMEA`".into()];
        p
    }

    #[test]
    fn renderings_match_their_snapshots() {
        let p = sample_plan(12);
        insta::assert_snapshot!("plan_text", text(&p));
        insta::assert_snapshot!("plan_markdown", markdown(&p));
        insta::assert_snapshot!("plan_json", json(&p));
        insta::assert_snapshot!("plan_summary_line", summary_line(&p));
        let n = native_sample();
        insta::assert_snapshot!("native_plan_text", text(&n));
        insta::assert_snapshot!("native_plan_json", json(&n));
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(2500), "2,500");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
