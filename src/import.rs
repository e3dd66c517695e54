//! `realign import`: a spec written from the org's current state, so a team can adopt
//! realign without a big-bang change. Planning the imported spec reports no changes.
//!
//! Every account is held by explicit id in the territory it holds now; replace ids with
//! rules over time. Names and ids are written double-quoted, so YAML never reads them as
//! booleans or numbers (`NO`, `ON`, `0123`, 19-digit ids).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::plan::{Assigned, OrgState};
use crate::spec::{Id, Mode, Module};

/// What the imported `realign.yaml` says.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    pub module: Module,
    pub mode: Mode,
    /// Field mode: the territory field.
    pub field: String,
    pub dc: String,
    pub edition: String,
}

/// A YAML double-quoted scalar (a JSON string is one).
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// A file name for a territory: lowercase words joined by dashes.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for w in name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&w.to_ascii_lowercase());
    }
    if out.is_empty() {
        "territory".into()
    } else {
        out
    }
}

struct Territory {
    name: String,
    parent: Option<String>,
    id: Option<Id>,
    ids: BTreeSet<(usize, String)>,
}

/// The files of the imported spec, as (relative path, text), in a stable order.
pub fn render(org: &OrgState, s: &ImportSettings) -> Vec<(String, String)> {
    let mut territories: BTreeMap<String, Territory> = BTreeMap::new();
    let mut several = false;
    match s.mode {
        Mode::Field => {
            for r in &org.records {
                let Some(v) = r
                    .territory
                    .as_deref()
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                else {
                    continue;
                };
                territories
                    .entry(v.to_lowercase())
                    .or_insert_with(|| Territory {
                        name: v.to_string(),
                        parent: None,
                        id: None,
                        ids: BTreeSet::new(),
                    })
                    .ids
                    .insert(key(&r.id));
            }
        }
        Mode::Native => {
            let by_id: BTreeMap<&Id, &crate::plan::OrgTerritory> =
                org.territories.iter().map(|t| (&t.id, t)).collect();
            for t in &org.territories {
                // The org's root territory holds no records of its own.
                if t.parent.is_none() {
                    continue;
                }
                let parent = t
                    .parent
                    .as_ref()
                    .filter(|p| by_id.get(&p.id).is_none_or(|pt| pt.parent.is_some()))
                    .map(|p| p.name.clone());
                territories.insert(
                    t.name.to_lowercase(),
                    Territory {
                        name: t.name.clone(),
                        parent,
                        id: Some(t.id.clone()),
                        ids: BTreeSet::new(),
                    },
                );
            }
            for r in &org.records {
                // Only manual memberships: rule-assigned ones are Zoho's to keep.
                let manual: Vec<_> = r
                    .memberships
                    .iter()
                    .filter(|m| m.assigned != Assigned::Automatically)
                    .collect();
                several |= manual.len() > 1;
                for m in manual {
                    if let Some(t) = territories
                        .values_mut()
                        .find(|t| t.id.as_ref() == Some(&m.id))
                    {
                        t.ids.insert(key(&r.id));
                    }
                }
            }
        }
    }
    let mut files = vec![("realign.yaml".to_string(), org_file(s, several))];
    let mut used = BTreeSet::new();
    for t in territories.values() {
        let mut name = slug(&t.name);
        let mut n = 2;
        while !used.insert(name.clone()) || name == "realign" {
            name = format!("{}-{n}", slug(&t.name));
            n += 1;
        }
        files.push((format!("{name}.yaml"), territory_file(t)));
    }
    files
}

fn key(id: &Id) -> (usize, String) {
    (id.as_str().len(), id.to_string())
}

fn org_file(s: &ImportSettings, several: bool) -> String {
    let mut out = String::from("# yaml-language-server: $schema=../schemas/realign.schema.json\n");
    out.push_str("# Written by `realign import` from the org's current state.\n");
    let _ = writeln!(out, "module: {}", s.module);
    match s.mode {
        Mode::Field => {
            let _ = writeln!(out, "mode: field\nfield: {}", q(&s.field));
        }
        Mode::Native => {
            out.push_str("mode: native\n");
            if several {
                out.push_str("# Some accounts hold several territories by hand; keep them all.\n");
            }
            let _ = writeln!(out, "exclusive: {}", !several);
        }
    }
    let _ = writeln!(out, "zoho:\n  dc: {}\n  edition: {}", s.dc, s.edition);
    out.push_str("# Accounts that no territory holds stay as they are.\nunmatched: keep\n");
    out
}

fn territory_file(t: &Territory) -> String {
    let mut out =
        String::from("# yaml-language-server: $schema=../schemas/territory.schema.json\n");
    let _ = writeln!(
        out,
        "# Imported: the {} accounts that hold this territory now. Replace ids with rules as you go.",
        t.ids.len()
    );
    let _ = writeln!(out, "name: {}", q(&t.name));
    if let Some(p) = &t.parent {
        let _ = writeln!(out, "parent: {}", q(p));
    }
    if let Some(id) = &t.id {
        let _ = writeln!(out, "id: {}", q(id.as_str()));
    }
    if t.ids.is_empty() {
        out.push_str("accounts: {}\n");
    } else {
        out.push_str("accounts:\n  ids:\n");
        for (_, id) in &t.ids {
            let _ = writeln!(out, "    - {}", q(id));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Record;

    fn rec(id: &str, t: Option<&str>) -> Record {
        Record {
            id: Id::parse(id).unwrap(),
            name: None,
            territory: t.map(str::to_string),
            fields: Default::default(),
            modified_time: None,
            memberships: vec![],
        }
    }

    #[test]
    fn quotes_what_yaml_would_misread_and_orders_stably() {
        let org = OrgState {
            records: vec![
                rec("5725767000000400002", Some("NO")),
                rec("999", Some("NO")),
                rec("7", Some("0123")),
                rec("8", None),
            ],
            territories: vec![],
        };
        let s = ImportSettings {
            module: Module::Accounts,
            mode: Mode::Field,
            field: "Territory".into(),
            dc: "us".into(),
            edition: "enterprise".into(),
        };
        let files = render(&org, &s);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["realign.yaml", "0123.yaml", "no.yaml"]);
        let no = &files[2].1;
        assert!(no.contains("name: \"NO\""), "{no}");
        assert!(
            no.find("\"999\"").unwrap() < no.find("\"5725767000000400002\"").unwrap(),
            "numeric order: {no}"
        );
        let t: crate::spec::TerritoryFile = serde_yaml::from_str(no).unwrap();
        assert_eq!(t.name, "NO");
        assert_eq!(t.accounts.unwrap().ids[1].as_str(), "5725767000000400002");
        let t: crate::spec::TerritoryFile = serde_yaml::from_str(&files[1].1).unwrap();
        assert_eq!(t.name, "0123");
        assert!(files[0].1.contains("unmatched: keep"));
    }
}
