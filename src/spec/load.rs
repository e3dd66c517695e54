//! Loading a spec directory: `realign.yaml` plus one YAML file per territory, parsed,
//! checked and compiled, with every problem positioned at file, line and column.
//!
//! This is the only place realign parses YAML.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::{Diagnostic, SpecError};
use super::id::Id;
use super::matching::{resolve, Claim, ClaimSource, Expr, Resolution};
use super::types::{Condition, Mode, OrgFile, TerritoryFile};

pub const ORG_FILE: &str = "realign.yaml";

/// A validated, compiled spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The directory as the user named it.
    pub root: PathBuf,
    pub org: OrgFile,
    /// Territories in file-path order.
    pub territories: Vec<Territory>,
    /// sha256 over every file's path and bytes.
    pub digest: String,
}

/// One compiled territory.
#[derive(Debug, Clone)]
pub struct Territory {
    pub name: String,
    pub parent: Option<String>,
    pub priority: i32,
    pub id: Option<Id>,
    pub protected: bool,
    /// Path shown to people, e.g. `territories/emea/dach.yaml`.
    pub file: PathBuf,
    /// 1-based line of `name:`.
    pub line: usize,
    pub ids: BTreeSet<Id>,
    pub rules: Vec<Rule>,
    pub exclude_ids: BTreeSet<Id>,
    pub exclude_rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// `rule \`us-west\`` or `rule #2`.
    pub label: String,
    pub line: usize,
    pub expr: Expr,
}

impl Territory {
    /// Describes a claim for people: the file and the rule or explicit id.
    pub fn describe(&self, source: &ClaimSource) -> String {
        match source {
            ClaimSource::ExplicitId => format!("explicit id in {}", self.file.display()),
            ClaimSource::Rule(i) => {
                let r = &self.rules[*i];
                format!("{} in {}:{}", r.label, self.file.display(), r.line)
            }
        }
    }
}

impl Spec {
    pub fn mode(&self) -> Mode {
        self.org.mode
    }

    /// Field names the rules read.
    pub fn rule_fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.territories {
            for r in t.rules.iter().chain(&t.exclude_rules) {
                r.expr.fields(&mut out);
            }
        }
        out.sort();
        out
    }

    pub fn territory_by_name(&self, name: &str) -> Option<usize> {
        let want = name.trim().to_lowercase();
        self.territories
            .iter()
            .position(|t| t.name.trim().to_lowercase() == want)
    }

    /// Every territory's claim on a record, and the verdict.
    pub fn resolve(&self, id: &Id, fields: &Map<String, Value>) -> Resolution {
        let mut claims = Vec::new();
        let mut excluded_by = Vec::new();
        for (ti, t) in self.territories.iter().enumerate() {
            if t.ids.contains(id) {
                claims.push(Claim {
                    territory: ti,
                    source: ClaimSource::ExplicitId,
                    priority: t.priority,
                });
                continue;
            }
            let Some(ri) = t.rules.iter().position(|r| r.expr.matches(fields)) else {
                continue;
            };
            if t.exclude_ids.contains(id) || t.exclude_rules.iter().any(|r| r.expr.matches(fields))
            {
                excluded_by.push(ti);
                continue;
            }
            claims.push(Claim {
                territory: ti,
                source: ClaimSource::Rule(ri),
                priority: t.priority,
            });
        }
        resolve(claims, excluded_by)
    }

    /// The error for an ambiguous record: the record, both files and both rules.
    pub fn ambiguity(&self, record: &Id, first: &Claim, second: &Claim) -> Diagnostic {
        let a = &self.territories[first.territory];
        let b = &self.territories[second.territory];
        let line = match first.source {
            ClaimSource::Rule(i) => a.rules[i].line,
            ClaimSource::ExplicitId => a.line,
        };
        Diagnostic::new(
            &a.file,
            line,
            0,
            format!(
                "record `{record}` is claimed equally by `{}` ({}) and `{}` ({}), both at priority {}: give one territory a higher priority, or exclude the record from one",
                a.name,
                a.describe(&first.source),
                b.name,
                b.describe(&second.source),
                first.priority
            ),
        )
    }
}

/// Loads, checks and compiles the spec in `dir`. Reads files only; no network.
pub fn load_dir(dir: &Path) -> Result<Spec, SpecError> {
    let org_path = dir.join(ORG_FILE);
    if !dir.is_dir() {
        return Err(SpecError::Invalid(vec![Diagnostic::new(
            dir,
            0,
            0,
            "no such spec directory: name the directory that holds realign.yaml (default `territories`)",
        )]));
    }
    let mut diags = Vec::new();
    let mut hasher = Sha256::new();

    let org = match read(&org_path) {
        Ok(text) => {
            digest_file(&mut hasher, Path::new(ORG_FILE), &text);
            parse::<OrgFile>(&org_path, &text, &mut diags)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            diags.push(Diagnostic::new(
                &org_path,
                0,
                0,
                "missing: every spec directory needs a realign.yaml (module, mode, field, zoho settings); see territories/realign.yaml for an example",
            ));
            None
        }
        Err(source) => {
            return Err(SpecError::Io {
                path: org_path,
                source,
            })
        }
    };
    if let Some(org) = &org {
        check_org(
            org,
            &org_path,
            &read(&org_path).unwrap_or_default(),
            &mut diags,
        );
    }

    let mut files = Vec::new();
    collect_yaml(dir, dir, &mut files).map_err(|source| SpecError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    files.sort();

    let mut territories = Vec::new();
    for rel in files {
        let path = dir.join(&rel);
        let text = read(&path).map_err(|source| SpecError::Io {
            path: path.clone(),
            source,
        })?;
        digest_file(&mut hasher, &rel, &text);
        if text.trim().is_empty()
            || text
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            diags.push(Diagnostic::new(
                &path,
                1,
                1,
                "the file is empty (half-written?): a territory file needs at least `name:`",
            ));
            continue;
        }
        // Numbers YAML would read in another form are caught on the text, before serde
        // has turned them into other digits.
        let before = diags.len();
        leading_zero_ids(&path, &text, &mut diags);
        if diags.len() > before {
            continue;
        }
        if let Some(tf) = parse::<TerritoryFile>(&path, &text, &mut diags) {
            if let Some(t) = compile(tf, &path, &text, &mut diags) {
                territories.push(t);
            }
        }
    }

    // Several territories may hold one record in native mode with `exclusive: false`.
    let one_per_record = org
        .as_ref()
        .is_none_or(|o| o.mode == Mode::Field || o.exclusive);
    check_territories(&territories, one_per_record, &mut diags);
    if territories.is_empty() && diags.is_empty() {
        diags.push(Diagnostic::new(
            dir,
            0,
            0,
            "no territory files: add one YAML file per territory beside realign.yaml",
        ));
    }
    if !diags.is_empty() {
        return Err(SpecError::Invalid(diags));
    }
    Ok(Spec {
        root: dir.to_path_buf(),
        org: org.expect("no diagnostics means realign.yaml parsed"),
        territories,
        digest: format!("sha256:{:x}", hasher.finalize()),
    })
}

fn read(path: &Path) -> std::io::Result<String> {
    let bytes = fs::read(path)?;
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is not UTF-8 text",
        )
    })
}

fn digest_file(h: &mut Sha256, rel: &Path, text: &str) {
    h.update(rel.to_string_lossy().replace('\\', "/").as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    h.update([0]);
}

/// Territory files: every `.yaml`/`.yml` below `dir` except the top-level realign.yaml,
/// skipping hidden files and directories (editors' swap files, `.git`).
fn collect_yaml(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks, so a directory swapped in by a symlink is read through.
        let meta = fs::metadata(&path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "`{}`: {e} (a broken or looping link? fix or remove it)",
                    path.display()
                ),
            )
        })?;
        if meta.is_dir() {
            collect_yaml(root, &path, out)?;
        } else if is_yaml(&name) {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            if rel != Path::new(ORG_FILE) {
                out.push(rel);
            }
        }
    }
    Ok(())
}

/// `.yaml` or `.yml` in any case: a file renamed `DACH.YAML` is still a territory, not
/// silently skipped (which would plan its accounts away).
fn is_yaml(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml")
}

/// A field API name: letters, digits and underscores, optionally one `.` for a lookup's
/// field. Anything else could not be a Zoho field, and must never reach a query.
pub fn is_field_name(name: &str) -> bool {
    let part = |p: &str| {
        p.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2 && parts.iter().all(|p| part(p))
}

/// Unquoted ids with a leading zero (`- 0777`): YAML reads them as numbers and the zero
/// is lost, so the id would silently be another one.
fn leading_zero_ids(path: &Path, text: &str, diags: &mut Vec<Diagnostic>) {
    // Only `ids:` lists: rule values may be numbers on purpose (`in: [0.5, 1.5]`).
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut ids_at: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("");
        let t = code.trim_start();
        if t.is_empty() {
            continue;
        }
        let items: Vec<&str> = if let Some(rest) = t.strip_prefix("ids:") {
            ids_at = Some(indent(code));
            match (rest.find('['), rest.rfind(']')) {
                (Some(a), Some(b)) if b > a => rest[a + 1..b].split(',').collect(),
                _ => continue,
            }
        } else if let Some(rest) = t
            .strip_prefix("- ")
            .filter(|_| ids_at.is_some_and(|b| indent(code) >= b))
        {
            vec![rest]
        } else {
            if ids_at.is_some_and(|b| indent(code) <= b) {
                ids_at = None;
            }
            continue;
        };
        for item in items {
            let t = item.trim();
            let lower = t.to_ascii_lowercase();
            let other_base = ["0x", "0o", "0b"].iter().any(|p| lower.starts_with(p)) && t.len() > 2;
            let not_whole = t.chars().next().is_some_and(|c| c.is_ascii_digit())
                && (t.contains('.') || lower.contains('e'))
                && t.parse::<f64>().is_ok();
            if other_base || not_whole {
                let col = line.find(t).map(|c| c + 1).unwrap_or(0);
                diags.push(Diagnostic::new(
                    path,
                    i + 1,
                    col,
                    format!("`{t}` is a number YAML reads in another form (it would not stay these digits): quote it if it is an id or a value to compare as text"),
                ));
                continue;
            }
            if t.len() > 1 && t.starts_with('0') && t.bytes().all(|b| b.is_ascii_digit()) {
                let col = line.find(t).map(|c| c + 1).unwrap_or(0);
                diags.push(Diagnostic::new(
                    path,
                    i + 1,
                    col,
                    format!("`{t}` has a leading zero, which YAML drops from an unquoted number: quote it (`\"{t}\"`)"),
                ));
            }
        }
    }
}

fn parse<T: DeserializeOwned>(path: &Path, text: &str, diags: &mut Vec<Diagnostic>) -> Option<T> {
    match serde_yaml::from_str::<T>(text) {
        Ok(v) => Some(v),
        Err(e) => {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            let tab = line > 0 && text.lines().nth(line - 1).is_some_and(|l| l.contains('\t'));
            diags.push(Diagnostic::new(path, line, column, yaml_message(&e, tab)));
            None
        }
    }
}

/// serde_yaml's message without its trailing " at line X column Y" (we print positions
/// ourselves), with a hint for the mistakes people make most.
fn yaml_message(e: &serde_yaml::Error, tab_on_line: bool) -> String {
    let mut msg = e.to_string();
    if let Some(i) = msg.find(" at line ") {
        msg.truncate(i);
    }
    // serde's words are about Rust types; say them in the file's terms.
    for (rust, plain) in [
        (
            "data did not match any variant of untagged enum Scalar",
            "expected one value: text, a number or true/false",
        ),
        ("invalid type: unit value", "an empty value"),
        (
            "struct TerritoryFile",
            "a territory (name, parent, priority, id, protected, accounts)",
        ),
        (
            "struct AccountsSpec",
            "an `accounts` section (ids, rules, exclude)",
        ),
        ("struct Exclude", "an `exclude` section (ids, rules)"),
        (
            "struct Condition",
            "a rule (`field` with one operator, or `all`, `any`, `not`)",
        ),
        (
            "struct OrgFile",
            "realign.yaml settings (module, mode, field, zoho, ...)",
        ),
        ("struct ZohoSettings", "a `zoho` section (dc, edition)"),
        (
            "struct Guardrails",
            "a `guardrails` section (max_changes, max_change_ratio)",
        ),
        ("struct Pacing", "a `pacing` section"),
        ("struct Freeze", "a freeze window (from, to, reason)"),
        ("expected i32", "expected a whole number"),
        ("expected u64", "expected a whole number of 0 or more"),
        ("expected u32", "expected a whole number of 0 or more"),
        ("expected usize", "expected a whole number of 0 or more"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
    ] {
        msg = msg.replace(rust, plain);
    }
    if msg.contains("unknown field") {
        msg.push_str(" (check the spelling; schemas/ lists every key)");
    } else if tab_on_line || msg.contains("cannot start any token") && msg.contains('\t') {
        msg.push_str(" (YAML indents with spaces, not tabs)");
    } else if msg.contains("did not find expected")
        || msg.contains("mapping values are not allowed")
    {
        msg.push_str(" (check the indentation: nested keys need more spaces than their parent)");
    } else if msg.contains("end of stream") {
        msg.push_str(" (an unclosed quote or bracket above?)");
    }
    msg
}

fn check_org(org: &OrgFile, path: &Path, text: &str, diags: &mut Vec<Diagnostic>) {
    if org.mode == Mode::Field {
        match &org.field {
            None => diags.push(Diagnostic::new(
                path,
                1,
                1,
                "`mode: field` needs `field:`, the API name of the field that holds the territory (e.g. `field: Territory`)",
            )),
            Some(f) if !f.trim().is_empty() && !is_field_name(f.trim()) => {
                let (l, c) = find(text, "field:").unwrap_or((1, 1));
                diags.push(Diagnostic::new(
                    path,
                    l,
                    c,
                    format!("`{f}` is not a Zoho field API name: give the field's API name, e.g. `Territory`"),
                ));
            }
            Some(f) if f.trim().is_empty() => {
                let (l, c) = find(text, "field:").unwrap_or((1, 1));
                diags.push(Diagnostic::new(path, l, c, "`field` is empty: give the field's API name"));
            }
            _ => {}
        }
    }
    if let Some(r) = org.guardrails.max_change_ratio {
        if !(0.0..=1.0).contains(&r) {
            let (l, c) = find(text, "max_change_ratio").unwrap_or((0, 0));
            diags.push(Diagnostic::new(
                path,
                l,
                c,
                format!(
                    "`max_change_ratio` is `{r}`: give a share between 0 and 1 (0.25 is a quarter)"
                ),
            ));
        }
    }
    if let Some(b) = org.pacing.batch_size {
        if b == 0 {
            let (l, c) = find(text, "batch_size").unwrap_or((0, 0));
            diags.push(Diagnostic::new(
                path,
                l,
                c,
                "`batch_size` is `0`: give at least 1",
            ));
        }
    }
    for f in &org.freeze {
        if let Err(msg) = f.dates() {
            let (l, c) = find(text, &f.from).unwrap_or((0, 0));
            diags.push(Diagnostic::new(path, l, c, msg));
        }
    }
    for (key, zero) in [
        ("calls_per_second", org.pacing.calls_per_second == Some(0)),
        ("deadline_minutes", org.pacing.deadline_minutes == Some(0)),
    ] {
        if zero {
            let (l, c) = find(text, key).unwrap_or((0, 0));
            diags.push(Diagnostic::new(
                path,
                l,
                c,
                format!("`{key}` is `0`: give at least 1"),
            ));
        }
    }
    if org.pacing.concurrency == Some(0) {
        let (l, c) = find(text, "concurrency").unwrap_or((0, 0));
        diags.push(Diagnostic::new(
            path,
            l,
            c,
            "`concurrency` is `0`: give at least 1",
        ));
    }
}

fn compile(
    tf: TerritoryFile,
    path: &Path,
    text: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Territory> {
    let before = diags.len();
    let line = find(text, "name:").map(|p| p.0).unwrap_or(1);
    let Some(accounts) = tf.accounts.clone() else {
        diags.push(Diagnostic::new(
            path,
            text.lines().count().max(1),
            1,
            "`accounts` is missing (is the file half-written?): give `ids` or `rules` under it, or `accounts: {}` for a territory that holds no records itself",
        ));
        return None;
    };
    if tf.name.trim().is_empty() {
        diags.push(Diagnostic::new(
            path,
            line,
            1,
            "`name` is empty: give the territory a name",
        ));
    }
    let rules = compile_rules(&accounts.rules, RuleList::Accounts, path, text, diags);
    let exclude_rules = compile_rules(
        &accounts.exclude.rules,
        RuleList::Exclude,
        path,
        text,
        diags,
    );

    let mut ids = BTreeSet::new();
    for id in &accounts.ids {
        if !ids.insert(id.clone()) {
            let (l, c) = find_nth(text, id.as_str(), 2).unwrap_or((0, 0));
            diags.push(Diagnostic::new(
                path,
                l,
                c,
                format!("id `{id}` is listed twice: remove one"),
            ));
        }
    }
    let exclude_ids: BTreeSet<Id> = accounts.exclude.ids.iter().cloned().collect();
    for id in ids.intersection(&exclude_ids) {
        let (l, c) = find(text, id.as_str()).unwrap_or((0, 0));
        diags.push(Diagnostic::new(
            path,
            l,
            c,
            format!("id `{id}` is both listed and excluded: keep it in one place"),
        ));
    }
    if accounts.ids.is_empty() && accounts.rules.is_empty() && !tf.protected {
        // An empty territory is legal (a parent that holds no records), but say so in
        // plans rather than here; nothing to check.
    }
    if let Some(parent) = &tf.parent {
        if parent.trim().eq_ignore_ascii_case(tf.name.trim()) {
            let (l, c) = find(text, "parent:").unwrap_or((0, 0));
            diags.push(Diagnostic::new(
                path,
                l,
                c,
                format!("territory `{}` names itself as its parent", tf.name),
            ));
        }
    }
    if diags.len() > before {
        return None;
    }
    Some(Territory {
        name: tf.name.trim().to_string(),
        parent: tf.parent.map(|p| p.trim().to_string()),
        priority: tf.priority,
        id: tf.id,
        protected: tf.protected,
        file: path.to_path_buf(),
        line,
        ids,
        rules,
        exclude_ids,
        exclude_rules,
    })
}

#[derive(Clone, Copy)]
enum RuleList {
    Accounts,
    Exclude,
}

fn compile_rules(
    list: &[Condition],
    which: RuleList,
    path: &Path,
    text: &str,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Rule> {
    let mut out = Vec::new();
    let mut names = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    let items = rule_items(&lines, which);
    for (i, c) in list.iter().enumerate() {
        let line = rule_line(&lines, items.get(i), c.name.as_deref()).unwrap_or(0);
        let label = match &c.name {
            Some(n) => format!("rule `{n}`"),
            None => format!("rule #{}", i + 1),
        };
        if let Some(n) = &c.name {
            if let Some(prev) = names.insert(n.clone(), line) {
                diags.push(Diagnostic::new(
                    path,
                    line,
                    0,
                    format!("rule name `{n}` is used twice (first at line {prev}): rule names name the rule in plans, keep them unique"),
                ));
            }
        }
        match Expr::compile(c) {
            Ok(expr) => {
                let mut fields = Vec::new();
                expr.fields(&mut fields);
                for f in fields.iter().filter(|f| !is_field_name(f)) {
                    diags.push(Diagnostic::new(
                        path,
                        line,
                        0,
                        format!("{label}: `{f}` is not a Zoho field API name (letters, digits and underscores, e.g. `Billing_Country`)"),
                    ));
                }
                out.push(Rule { label, line, expr })
            }
            Err(msg) => diags.push(Diagnostic::new(path, line, 0, format!("{label}: {msg}"))),
        }
    }
    out
}

fn check_territories(ts: &[Territory], one_per_record: bool, diags: &mut Vec<Diagnostic>) {
    let mut by_name: BTreeMap<String, &Territory> = BTreeMap::new();
    for t in ts {
        if let Some(prev) = by_name.insert(t.name.to_lowercase(), t) {
            diags.push(Diagnostic::new(
                &t.file,
                t.line,
                1,
                format!(
                    "territory `{}` is also declared in {}:{}: names must be unique",
                    t.name,
                    prev.file.display(),
                    prev.line
                ),
            ));
        }
    }
    let mut pinned: BTreeMap<&Id, &Territory> = BTreeMap::new();
    for t in ts {
        if let Some(id) = &t.id {
            if let Some(prev) = pinned.insert(id, t) {
                diags.push(Diagnostic::new(
                    &t.file,
                    t.line,
                    1,
                    format!(
                        "territory id `{id}` is also pinned by `{}` in {}",
                        prev.name,
                        prev.file.display()
                    ),
                ));
            }
        }
    }
    // The same record listed explicitly by two territories at equal priority.
    let mut explicit: BTreeMap<&Id, &Territory> = BTreeMap::new();
    for t in ts {
        for id in &t.ids {
            match explicit.get(id) {
                Some(prev) if one_per_record && prev.priority == t.priority => {
                    let (l, c) = find(
                        &fs::read_to_string(&t.file).unwrap_or_default(),
                        id.as_str(),
                    )
                    .unwrap_or((0, 0));
                    diags.push(Diagnostic::new(
                        &t.file,
                        l,
                        c,
                        format!(
                            "record `{id}` is listed by `{}` here and by `{}` in {}, both at priority {}: list it in one territory, or give one a higher priority",
                            t.name,
                            prev.name,
                            prev.file.display(),
                            t.priority
                        ),
                    ));
                }
                Some(prev) if prev.priority > t.priority => {}
                _ => {
                    explicit.insert(id, t);
                }
            }
        }
    }
    // Parent cycles among declared territories. A parent that is not declared is a Zoho
    // territory realign does not own (checked against the org in native mode).
    for t in ts {
        let mut seen = vec![t.name.to_lowercase()];
        let mut cur = t.parent.clone();
        while let Some(p) = cur {
            let key = p.to_lowercase();
            if seen.contains(&key) {
                diags.push(Diagnostic::new(
                    &t.file,
                    t.line,
                    1,
                    format!("territory `{}` is its own ancestor (parents loop through `{p}`): break the loop", t.name),
                ));
                break;
            }
            seen.push(key.clone());
            cur = by_name.get(&key).and_then(|pt| pt.parent.clone());
        }
    }
}

/// Line and column (1-based) of the first occurrence of `needle`, skipping comments.
pub(crate) fn find(text: &str, needle: &str) -> Option<(usize, usize)> {
    find_nth(text, needle, 1)
}

fn find_nth(text: &str, needle: &str, nth: usize) -> Option<(usize, usize)> {
    let mut seen = 0;
    for (i, line) in text.lines().enumerate() {
        let code = line.split(" #").next().unwrap_or(line);
        if code.trim_start().starts_with('#') {
            continue;
        }
        if let Some(col) = code.find(needle) {
            seen += 1;
            if seen == nth {
                return Some((i + 1, col + 1));
            }
        }
    }
    None
}

/// The list items under `accounts.rules` (or `accounts.exclude.rules`), as (first line,
/// line after the last) in 0-based line numbers; found once per file, not once per rule.
fn rule_items(lines: &[&str], which: RuleList) -> Vec<(usize, usize)> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut start = 0;
    if let RuleList::Exclude = which {
        match lines
            .iter()
            .position(|l| l.trim_start().starts_with("exclude:"))
        {
            Some(p) => start = p,
            None => return Vec::new(),
        }
    }
    let Some(offset) = lines[start..]
        .iter()
        .position(|l| l.trim_start().starts_with("rules:"))
    else {
        return Vec::new();
    };
    let rules_at = start + offset;
    let base = indent(lines[rules_at]);
    let mut item_indent = None;
    let mut items: Vec<(usize, usize)> = Vec::new();
    let mut end = lines.len();
    for (i, l) in lines.iter().enumerate().skip(rules_at + 1) {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let ind = indent(l);
        let is_item = t.starts_with("- ") || t == "-";
        if ind < base || (ind == base && !is_item) {
            end = i;
            break;
        }
        if is_item && item_indent.is_none_or(|w| w == ind) {
            item_indent = Some(ind);
            if let Some(last) = items.last_mut() {
                last.1 = i;
            }
            items.push((i, lines.len()));
        }
    }
    if let Some(last) = items.last_mut() {
        last.1 = last.1.min(end);
    }
    items
}

/// The 1-based line of one rule: its `name:` line when it has a name, else its first line.
fn rule_line(lines: &[&str], item: Option<&(usize, usize)>, name: Option<&str>) -> Option<usize> {
    let &(first, end) = item?;
    if let Some(n) = name {
        if let Some(j) = (first..end).find(|&j| lines[j].contains("name:") && lines[j].contains(n))
        {
            return Some(j + 1);
        }
    }
    Some(first + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(files: &[(&str, &str)]) -> Result<Spec, SpecError> {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        fs::create_dir_all(&root).unwrap();
        fs::write(
            root.join(ORG_FILE),
            "module: Accounts\nmode: field\nfield: Territory\n",
        )
        .unwrap();
        for (name, text) in files {
            let p = root.join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        let out = load_dir(&root);
        drop(dir);
        out
    }

    fn only_error(r: Result<Spec, SpecError>) -> Diagnostic {
        let e = r.unwrap_err();
        let d = e.diagnostics();
        assert_eq!(d.len(), 1, "{e}");
        d[0].clone()
    }

    #[test]
    fn the_example_spec_loads() {
        let spec = load_dir(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/territories"
        )))
        .unwrap();
        assert_eq!(spec.territories.len(), 16);
        assert!(spec.rule_fields().contains(&"Billing_Country".to_string()));
        let strategic = &spec.territories[spec.territory_by_name("strategic accounts").unwrap()];
        assert!(strategic
            .ids
            .contains(&Id::parse("5725767000000415042").unwrap()));
        assert!(spec.digest.starts_with("sha256:"));
    }

    #[test]
    fn unknown_key_is_positioned() {
        let d = only_error(spec_with(&[("a.yaml", "name: A\npriorty: 3\n")]));
        assert_eq!((d.line, d.column), (2, 1), "{d}");
        assert!(d.message.contains("unknown field `priorty`"), "{d}");
    }

    #[test]
    fn bad_indentation_is_positioned() {
        let d = only_error(spec_with(&[(
            "a.yaml",
            "name: A\naccounts:\n  rules:\n    - field: X\n     equals: y\n",
        )]));
        assert_eq!(d.line, 5, "{d}");
        assert!(d.file.ends_with("a.yaml"));
    }

    #[test]
    fn malformed_rule_names_its_line() {
        let d = only_error(spec_with(&[(
            "a.yaml",
            "name: A\naccounts:\n  rules:\n    - name: ok\n      field: X\n      equals: y\n    - name: broken\n      field: X\n",
        )]));
        assert_eq!(d.line, 7, "{d}");
        assert!(
            d.message.contains("rule `broken`") && d.message.contains("no operator"),
            "{d}"
        );
    }

    #[test]
    fn empty_file_is_an_error_not_an_empty_territory() {
        let d = only_error(spec_with(&[
            ("a.yaml", "name: A\naccounts: {}\n"),
            ("b.yaml", "\n# nothing yet\n"),
        ]));
        assert!(
            d.file.ends_with("b.yaml") && d.message.contains("empty"),
            "{d}"
        );
    }

    #[test]
    fn duplicate_explicit_claims_at_equal_priority_are_errors() {
        let d = only_error(spec_with(&[
            ("a.yaml", "name: A\naccounts:\n  ids: [\"1001\"]\n"),
            ("b.yaml", "name: B\naccounts:\n  ids:\n    - 1001\n"),
        ]));
        assert_eq!(d.line, 4, "{d}");
        assert!(
            d.message.contains("`1001`") && d.message.contains("a.yaml"),
            "{d}"
        );
    }

    #[test]
    fn rule_overlap_is_ambiguous_per_record() {
        let spec = spec_with(&[
            ("a.yaml", "name: A\naccounts:\n  rules:\n    - name: de\n      field: C\n      equals: DE\n"),
            ("b.yaml", "name: B\naccounts:\n  rules:\n    - name: eu\n      field: C\n      in: [DE, FR]\n"),
        ])
        .unwrap();
        let id = Id::parse("7").unwrap();
        let rec = serde_json::json!({"C": "de"}).as_object().unwrap().clone();
        let Resolution::Ambiguous { first, second } = spec.resolve(&id, &rec) else {
            panic!("expected ambiguity");
        };
        let d = spec.ambiguity(&id, &first, &second);
        assert!(
            d.message.contains("`7`")
                && d.message.contains("rule `de`")
                && d.message.contains("rule `eu`"),
            "{d}"
        );
        assert!(
            d.message.contains("a.yaml") && d.message.contains("b.yaml"),
            "{d}"
        );
        let rec = serde_json::json!({"C": "fr"}).as_object().unwrap().clone();
        assert!(matches!(
            spec.resolve(&id, &rec),
            Resolution::Claimed { .. }
        ));
    }

    #[test]
    fn duplicate_names_and_parent_loops_are_errors() {
        let e = spec_with(&[
            ("a.yaml", "name: A\nparent: B\naccounts: {}\n"),
            ("b.yaml", "name: B\nparent: A\naccounts: {}\n"),
            ("c.yaml", "name: a\naccounts: {}\n"),
        ])
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("also declared"), "{text}");
        assert!(text.contains("own ancestor"), "{text}");
    }

    #[test]
    fn freeze_dates_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(ORG_FILE),
            "field: T\nfreeze:\n  - from: 2026-12-24\n    to: 2026-12-01\n",
        )
        .unwrap();
        fs::write(dir.path().join("a.yaml"), "name: A\naccounts: {}\n").unwrap();
        let d = only_error(load_dir(dir.path()));
        assert!(d.message.contains("ends"), "{d}");
        assert_eq!(d.line, 3, "{d}");
        fs::write(
            dir.path().join(ORG_FILE),
            "field: T\nfreeze:\n  - from: 2026-12-24\n    to: 2027-01-02\n    reason: year-end close\n",
        )
        .unwrap();
        let spec = load_dir(dir.path()).unwrap();
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        assert!(spec.org.freeze[0].covers(day));
    }

    #[test]
    fn field_names_that_could_not_be_zoho_fields_are_errors() {
        let d = only_error(spec_with(&[(
            "a.yaml",
            "name: A\naccounts:\n  rules:\n    - name: sneaky\n      field: \"Billing_Country from Accounts --\"\n      equals: x\n",
        )]));
        assert_eq!(d.line, 4, "{d}");
        assert!(d.message.contains("not a Zoho field API name"), "{d}");
        assert!(
            is_field_name("Account_Name.Territories")
                && !is_field_name("a'b")
                && !is_field_name("a.b.c")
        );
    }

    #[test]
    fn unquoted_ids_with_a_leading_zero_are_errors() {
        let d = only_error(spec_with(&[(
            "a.yaml",
            "name: A\naccounts:\n  ids:\n    - 0777\n",
        )]));
        assert_eq!((d.line, d.column), (4, 7), "{d}");
        assert!(d.message.contains("quote it"), "{d}");
        assert!(spec_with(&[("a.yaml", "name: A\naccounts:\n  ids:\n    - \"0777\"\n")]).is_ok());
        assert!(spec_with(&[(
            "a.yaml",
            "name: A\naccounts:\n  rules:\n    - field: Score\n      in: [0.5, 1.5]\n"
        )])
        .is_ok());
        for odd in ["0o777", "0x1F", "5725767000000400092.0"] {
            let d = only_error(spec_with(&[(
                "a.yaml",
                &format!("name: A\naccounts:\n  ids:\n    - {odd}\n"),
            )]));
            assert!(d.message.contains(&format!("`{odd}`")), "{d}");
        }
    }

    #[test]
    fn upper_case_extensions_are_territory_files_too() {
        let spec = spec_with(&[
            ("a.YAML", "name: A\naccounts: {}\n"),
            ("b.Yml", "name: B\naccounts: {}\n"),
        ])
        .unwrap();
        assert_eq!(spec.territories.len(), 2);
    }

    #[test]
    fn errors_speak_of_the_file_not_of_rust_types() {
        let d = only_error(spec_with(&[("a.yaml", "name: A\npriority: high\n")]));
        assert!(d.message.contains("expected a whole number"), "{d}");
        let d = only_error(spec_with(&[("a.yaml", "name: A\naccounts:\n\tids: []\n")]));
        assert!(d.message.contains("not tabs"), "{d}");
        let d = only_error(spec_with(&[(
            "a.yaml",
            "name: A\naccounts:\n  rules:\n    - field: X\n      equals: [a, b]\n",
        )]));
        assert!(d.message.contains("expected one value"), "{d}");
        assert!(!d.message.contains("enum"), "{d}");
    }

    #[test]
    fn a_territory_cut_off_before_its_accounts_is_an_error() {
        let d = only_error(spec_with(&[("a.yaml", "name: DACH\nparent: EMEA\n")]));
        assert!(d.message.contains("`accounts` is missing"), "{d}");
    }

    #[test]
    fn field_mode_needs_a_field() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(ORG_FILE), "mode: field\n").unwrap();
        fs::write(dir.path().join("a.yaml"), "name: A\naccounts: {}\n").unwrap();
        let d = only_error(load_dir(dir.path()));
        assert!(d.message.contains("needs `field:`"), "{d}");
    }
}
