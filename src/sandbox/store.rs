//! The org's state: modules, their field definitions, records and territories, and every
//! change to them. No HTTP here; failures are [`StoreError`]s that the routes translate
//! into Zoho's codes and statuses.
//!
//! Seed records are generated on demand from their index (see [`super::seed`]); only
//! records that were changed are held (and persisted), so the `large` seed stays cheap.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::coql::{self, Compare, CoqlError, Query};
use super::seed::{self, Layout};

/// Everything that can go wrong inside the org, per record or per request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("module `{module}` does not exist")]
    UnknownModule { module: String },
    #[error("record `{id}` does not exist")]
    UnknownRecord { id: String },
    #[error("field `{field}` does not exist")]
    UnknownField { field: String },
    #[error("field `{field}` cannot be written")]
    ReadOnly { field: String },
    #[error("value of `{field}` is not a valid {expected}")]
    InvalidValue {
        field: String,
        expected: &'static str,
        supported: Vec<String>,
    },
    #[error("value of `{field}` is longer than {max} characters")]
    TooLong { field: String, max: usize },
    #[error("`{field}` is required")]
    Missing { field: String },
    #[error("record `{id}` appears more than once in the request")]
    DuplicateId { id: String },
    #[error("record `{id}` was modified at `{modified_time}`, after the given time")]
    Modified { id: String, modified_time: String },
    #[error("territory `{id}` does not exist")]
    UnknownTerritory { index: usize, id: String },
    #[error("territory `{id}` is given twice")]
    TerritoryRepeated {
        index: usize,
        first: usize,
        id: String,
    },
    #[error("territory `{id}` is already assigned to the record")]
    TerritoryAssigned { index: usize, id: String },
    #[error("territory `{id}` is not assigned to the record")]
    TerritoryNotAssigned { index: usize, id: String },
    #[error("territory `{id}` was assigned by a rule and cannot be removed")]
    TerritorySystemAssigned { index: usize, id: String },
    #[error("the record would have more than {limit} territories")]
    TerritoryLimit { limit: usize },
    #[error("a territory job for the record is already pending as `{job_id}`")]
    AlreadyScheduled { job_id: String },
    #[error("{}", .0.message)]
    Coql(CoqlError),
}

/// How a field's values are typed and whether the API may write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Id,
    Text {
        max: usize,
        required: bool,
    },
    /// A picklist whose values are the org's territory names.
    TerritoryPicklist,
    Integer,
    Currency,
    /// A system date-time (read-only).
    Time,
    /// A user lookup; `writable` for `Owner`, not for `Created_By` / `Modified_By`.
    User {
        writable: bool,
    },
    /// A record lookup (`{name, id}`).
    Lookup,
    /// The Territory Management membership list (read-only through PUT).
    Territories,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub api_name: &'static str,
    pub kind: Kind,
}

const fn f(api_name: &'static str, kind: Kind) -> Field {
    Field { api_name, kind }
}

const TEXT: Kind = Kind::Text {
    max: 255,
    required: false,
};
const NAME: Kind = Kind::Text {
    max: 255,
    required: true,
};

const SYSTEM: [Field; 5] = [
    f("Owner", Kind::User { writable: true }),
    f("Created_By", Kind::User { writable: false }),
    f("Created_Time", Kind::Time),
    f("Modified_By", Kind::User { writable: false }),
    f("Modified_Time", Kind::Time),
];

/// The modules the sandbox serves, as Zoho spells them.
pub const MODULES: [&str; 4] = ["Accounts", "Contacts", "Leads", "Deals"];

/// The fields of `module` in an org with this layout.
pub fn fields(module: &str, layout: Layout) -> Vec<Field> {
    let mut v = vec![f("id", Kind::Id)];
    match module {
        "Accounts" => v.extend([
            f("Account_Name", NAME),
            f("Billing_City", TEXT),
            f("Billing_State", TEXT),
            f("Billing_Country", TEXT),
            f("Industry", TEXT),
            f("Annual_Revenue", Kind::Currency),
            f("Employees", Kind::Integer),
        ]),
        "Contacts" => v.extend([
            f("First_Name", TEXT),
            f("Last_Name", NAME),
            f("Email", TEXT),
            f("Account_Name", Kind::Lookup),
            f("Mailing_Country", TEXT),
        ]),
        "Leads" => v.extend([
            f("First_Name", TEXT),
            f("Last_Name", NAME),
            f("Company", TEXT),
            f("Email", TEXT),
            f("Country", TEXT),
        ]),
        _ => v.extend([
            f("Deal_Name", NAME),
            f("Stage", TEXT),
            f("Amount", Kind::Currency),
            f("Account_Name", Kind::Lookup),
        ]),
    }
    match (module, layout) {
        ("Accounts", Layout::Field) => v.push(f("Territory", Kind::TerritoryPicklist)),
        ("Deals", Layout::Native) => v.push(f("Territory", Kind::Territories)),
        (_, Layout::Native) => v.push(f("Territories", Kind::Territories)),
        _ => {}
    }
    v.extend(SYSTEM);
    v
}

fn compare_kind(kind: Kind) -> Compare {
    match kind {
        Kind::Id => Compare::Id,
        Kind::Integer | Kind::Currency => Compare::Number,
        Kind::Time => Compare::Time,
        Kind::User { .. } | Kind::Lookup => Compare::Lookup,
        _ => Compare::Text,
    }
}

/// Which seed org this is; recorded in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedSpec {
    pub name: String,
    pub layout: Layout,
    pub accounts: usize,
}

/// A territory as the settings API shows it.
#[derive(Debug, Clone)]
pub struct Territory {
    pub id: u64,
    pub name: &'static str,
    pub parent: Option<u64>,
    pub description: &'static str,
}

/// Order of a record listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Id,
    CreatedTime,
    ModifiedTime,
}

#[derive(Debug, Clone)]
pub struct ListQuery {
    pub fields: Vec<String>,
    pub ids: Option<Vec<u64>>,
    pub sort_by: SortBy,
    pub ascending: bool,
    /// A territory id and whether its descendants count too.
    pub territory: Option<(u64, bool)>,
    pub offset: usize,
    pub limit: usize,
    /// Only records modified after this Unix time (`If-Modified-Since`).
    pub modified_since: Option<i64>,
}

/// What a successful write reports back.
#[derive(Debug, Clone)]
pub struct Written {
    pub id: String,
    pub modified_time: String,
    pub modified_by: Value,
    pub created_time: Value,
    pub created_by: Value,
}

/// A territory assignment waiting in a scheduled job.
#[derive(Debug, Clone)]
pub struct PendingChange {
    pub record: u64,
    pub territories: Vec<u64>,
    pub remove: bool,
}

#[derive(Default, Clone)]
struct ModuleData {
    /// Seed records, generated from their index.
    generated: usize,
    /// Records changed since the seed, by id.
    changed: BTreeMap<u64, Map<String, Value>>,
}

/// The state file's content.
#[derive(Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub seed: SeedSpec,
    /// Changed records by module; everything else is as seeded.
    pub changed: BTreeMap<String, Vec<Map<String, Value>>>,
}

pub const SNAPSHOT_FORMAT: u32 = 1;

pub struct Store {
    pub seed: SeedSpec,
    modules: BTreeMap<&'static str, ModuleData>,
    territories: Vec<Territory>,
    /// Records with a scheduled territory job, and the job.
    pending: BTreeMap<u64, String>,
    /// Bumped by every change; the state-file flusher writes when it moves.
    pub version: u64,
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Store {
    pub fn new(seed: SeedSpec) -> Store {
        let territories = seed::TERRITORIES
            .iter()
            .enumerate()
            .map(|(n, t)| Territory {
                id: seed::TERRITORY_BASE + n as u64,
                name: t.name,
                parent: t.parent.and_then(seed::territory_id),
                description: t.description,
            })
            .collect();
        let mut modules = BTreeMap::new();
        for m in MODULES {
            modules.insert(m, ModuleData::default());
        }
        modules.get_mut("Accounts").unwrap().generated = seed.accounts;
        Store {
            seed,
            modules,
            territories,
            pending: BTreeMap::new(),
            version: 0,
        }
    }

    pub fn from_snapshot(snapshot: Snapshot) -> Result<Store, String> {
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(format!(
                "state format `{}` is not the supported `{SNAPSHOT_FORMAT}`",
                snapshot.format
            ));
        }
        let mut store = Store::new(snapshot.seed);
        for (module, records) in snapshot.changed {
            let Some(data) = store.modules.get_mut(module.as_str()) else {
                return Err(format!("unknown module `{module}`"));
            };
            for record in records {
                let id = record
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| format!("a `{module}` record has no valid `id`"))?;
                if seed::account_index(id, data.generated).is_none() {
                    return Err(format!("record `{id}` is not part of the seed"));
                }
                data.changed.insert(id, record);
            }
        }
        Ok(store)
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            format: SNAPSHOT_FORMAT,
            seed: self.seed.clone(),
            changed: self
                .modules
                .iter()
                .filter(|(_, d)| !d.changed.is_empty())
                .map(|(m, d)| (m.to_string(), d.changed.values().cloned().collect()))
                .collect(),
        }
    }

    /// Restores the seed.
    pub fn reset(&mut self) {
        for data in self.modules.values_mut() {
            data.changed.clear();
        }
        self.pending.clear();
        self.version += 1;
    }

    /// The canonical module name for `name` (Zoho matches module names case-insensitively).
    pub fn module(&self, name: &str) -> Result<&'static str, StoreError> {
        MODULES
            .iter()
            .find(|m| m.eq_ignore_ascii_case(name))
            .copied()
            .ok_or_else(|| StoreError::UnknownModule {
                module: name.to_string(),
            })
    }

    pub fn layout(&self) -> Layout {
        self.seed.layout
    }

    pub fn fields(&self, module: &str) -> Vec<Field> {
        fields(module, self.seed.layout)
    }

    pub fn field(&self, module: &str, name: &str) -> Option<Field> {
        self.fields(module).into_iter().find(|f| f.api_name == name)
    }

    pub fn territories(&self) -> &[Territory] {
        &self.territories
    }

    pub fn territory(&self, id: u64) -> Option<&Territory> {
        self.territories.iter().find(|t| t.id == id)
    }

    /// `id` and every territory below it.
    fn subtree(&self, id: u64) -> BTreeSet<u64> {
        let mut set = BTreeSet::from([id]);
        loop {
            let before = set.len();
            for t in &self.territories {
                if t.parent.is_some_and(|p| set.contains(&p)) {
                    set.insert(t.id);
                }
            }
            if set.len() == before {
                return set;
            }
        }
    }

    pub fn count(&self, module: &str) -> usize {
        self.modules.get(module).map_or(0, |d| d.generated)
    }

    fn id_at(&self, index: usize) -> u64 {
        seed::account_id(index)
    }

    fn index_of(&self, module: &str, id: u64) -> Option<usize> {
        seed::account_index(id, self.count(module))
    }

    fn at(&self, module: &str, index: usize) -> Cow<'_, Map<String, Value>> {
        let data = &self.modules[module];
        let id = self.id_at(index);
        match data.changed.get(&id) {
            Some(r) => Cow::Borrowed(r),
            None => Cow::Owned(seed::account(index, self.seed.layout)),
        }
    }

    pub fn get(&self, module: &str, id: u64) -> Option<Map<String, Value>> {
        let index = self.index_of(module, id)?;
        Some(self.at(module, index).into_owned())
    }

    /// A page of records with `id` plus the requested fields.
    pub fn list(
        &self,
        module: &str,
        q: &ListQuery,
    ) -> Result<(Vec<Map<String, Value>>, bool), StoreError> {
        for name in &q.fields {
            self.field(module, name)
                .ok_or_else(|| StoreError::UnknownField {
                    field: name.clone(),
                })?;
        }
        let count = self.count(module);
        let filtered = q.ids.is_some() || q.territory.is_some() || q.modified_since.is_some();
        let mut indices: Vec<usize> = if let Some(ids) = &q.ids {
            let set: BTreeSet<usize> = ids
                .iter()
                .filter_map(|&id| self.index_of(module, id))
                .collect();
            set.into_iter().collect()
        } else if q.sort_by == SortBy::Id && !filtered {
            // Ids ascend with the index, so a page is a slice of the index range.
            let end = count.min(q.offset + q.limit + 1);
            let range: Vec<usize> = if q.ascending {
                (q.offset.min(count)..end).collect()
            } else {
                (q.offset.min(count)..end).map(|i| count - 1 - i).collect()
            };
            let more = range.len() > q.limit;
            let records = range
                .into_iter()
                .take(q.limit)
                .map(|i| project(&self.at(module, i), &q.fields))
                .collect();
            return Ok((records, more));
        } else {
            (0..count).collect()
        };
        if let Some(since) = q.modified_since {
            indices.retain(|&i| {
                coql::parse_time(&text(&self.at(module, i), "Modified_Time"))
                    .is_some_and(|m| m > since)
            });
        }
        if let Some((territory, children)) = q.territory {
            let wanted = if children {
                self.subtree(territory)
            } else {
                BTreeSet::from([territory])
            };
            let names: HashSet<&str> = wanted
                .iter()
                .filter_map(|id| self.territory(*id).map(|t| t.name))
                .collect();
            indices.retain(|&i| {
                let r = self.at(module, i);
                match self.seed.layout {
                    Layout::Field => r
                        .get("Territory")
                        .and_then(Value::as_str)
                        .is_some_and(|n| names.contains(n)),
                    Layout::Native => membership(&r).iter().any(|(id, _)| wanted.contains(id)),
                }
            });
        }
        let key = |i: usize| -> (String, usize) {
            match q.sort_by {
                SortBy::Id => (String::new(), i),
                SortBy::CreatedTime => (text(&self.at(module, i), "Created_Time"), i),
                SortBy::ModifiedTime => (text(&self.at(module, i), "Modified_Time"), i),
            }
        };
        let mut keyed: Vec<(String, usize)> = indices.into_iter().map(key).collect();
        keyed.sort();
        if !q.ascending {
            keyed.reverse();
        }
        let more = keyed.len() > q.offset + q.limit;
        let records = keyed
            .into_iter()
            .skip(q.offset)
            .take(q.limit)
            .map(|(_, i)| project(&self.at(module, i), &q.fields))
            .collect();
        Ok((records, more))
    }

    /// Runs a parsed COQL query.
    pub fn coql(&self, q: &Query) -> Result<(Vec<Map<String, Value>>, bool), StoreError> {
        let module = self.module(&q.module).map_err(|_| {
            StoreError::Coql(CoqlError {
                code: "INVALID_QUERY",
                message: "invalid module given".into(),
                details: json!({"module": q.module}).as_object().unwrap().clone(),
            })
        })?;
        let fields = self.fields(module);
        let kind = |column: &str| {
            let head = column.split('.').next().unwrap_or(column);
            fields.iter().find(|f| f.api_name == head).map(|f| f.kind)
        };
        for c in &q.columns {
            match (kind(c.field()), c.path.contains('.')) {
                (None, _) => return Err(StoreError::Coql(CoqlError::invalid_column(&c.path))),
                (Some(Kind::User { .. } | Kind::Lookup), true) | (Some(_), false) => {}
                (Some(_), true) => {
                    return Err(StoreError::Coql(CoqlError::invalid_column(&c.path)))
                }
            }
        }
        for column in q.filter.columns() {
            match kind(column) {
                None => return Err(StoreError::Coql(CoqlError::invalid_column(column))),
                Some(Kind::Territories) => {
                    return Err(StoreError::Coql(CoqlError::territory_in_where(column)))
                }
                Some(_) => {}
            }
        }
        for (column, _) in &q.order {
            if kind(column).is_none_or(|k| k == Kind::Territories) {
                return Err(StoreError::Coql(CoqlError::invalid_column(column)));
            }
        }
        let compare = |column: &str| {
            let k = kind(column).unwrap_or(TEXT);
            if column.contains('.') && !column.ends_with(".id") {
                Compare::Text
            } else {
                compare_kind(k)
            }
        };
        coql::check_types(&q.filter, &compare).map_err(StoreError::Coql)?;

        let count = self.count(module);
        let by_id = q.order.is_empty() || q.order == [("id".to_string(), true)];
        let wanted = q.offset + q.limit;
        let mut hits: Vec<Cow<'_, Map<String, Value>>> = Vec::new();
        let mut start = 0;
        if by_id {
            // Keyset pages (`where id > X order by id`) start at X instead of scanning.
            if let coql::Cond::Compare(c, coql::Op::Gt | coql::Op::Ge, lit) = &q.filter {
                if c == "id" {
                    if let coql::Literal::Str(v) | coql::Literal::Num(v) = lit {
                        if let Ok(after) = v.trim().parse::<u64>() {
                            start = (after.saturating_sub(seed::ACCOUNT_BASE) / seed::ACCOUNT_STEP)
                                as usize;
                            start = start.min(count);
                        }
                    }
                }
            }
        }
        let mut total = 0usize;
        for i in start..count {
            let r = self.at(module, i);
            if coql::matches(&q.filter, &r, &compare) {
                total += 1;
                hits.push(r);
                if by_id && total > wanted {
                    break;
                }
            }
        }
        if !by_id {
            hits.sort_by(|a, b| coql::order(a, b, &q.order, &compare));
        }
        let more = hits.len() > wanted;
        let rows = hits
            .iter()
            .skip(q.offset)
            .take(q.limit)
            .map(|r| {
                let mut row = Map::new();
                for c in &q.columns {
                    let value = coql::lookup(r, &c.path);
                    let value = match kind(c.field()) {
                        Some(Kind::Territories) => coql_territories(&value),
                        Some(Kind::User { .. } | Kind::Lookup) if !c.path.contains('.') => {
                            match value.get("id") {
                                Some(id) => json!({"id": id}),
                                None => Value::Null,
                            }
                        }
                        _ => value,
                    };
                    row.insert(c.key().to_string(), value);
                }
                if !row.contains_key("id") {
                    row.insert("id".into(), r.get("id").cloned().unwrap_or(Value::Null));
                }
                row
            })
            .collect();
        Ok((rows, more))
    }

    /// How `module`'s columns compare in conditions (lookup sub-keys compare as text).
    pub fn comparer(&self, module: &str) -> impl Fn(&str) -> Compare {
        let fields = self.fields(module);
        move |column: &str| {
            let head = column.split('.').next().unwrap_or(column);
            let kind = fields
                .iter()
                .find(|f| f.api_name == head)
                .map_or(TEXT, |f| f.kind);
            if column.contains('.') && !column.ends_with(".id") {
                Compare::Text
            } else {
                compare_kind(kind)
            }
        }
    }

    /// Whole records in id order that satisfy `filter`, from `offset`, at most `limit`;
    /// and whether more follow.
    pub fn scan(
        &self,
        module: &str,
        filter: Option<&coql::Cond>,
        offset: usize,
        limit: usize,
    ) -> (Vec<Map<String, Value>>, bool) {
        let compare = self.comparer(module);
        let mut skipped = 0;
        let mut out = Vec::new();
        for i in 0..self.count(module) {
            let r = self.at(module, i);
            if filter.is_some_and(|f| !coql::matches(f, &r, &compare)) {
                continue;
            }
            if skipped < offset {
                skipped += 1;
                continue;
            }
            if out.len() == limit {
                return (out, true);
            }
            out.push(r.into_owned());
        }
        (out, false)
    }

    fn check_value(&self, field: &Field, value: &Value) -> Result<Value, StoreError> {
        let name = field.api_name.to_string();
        let invalid = |expected: &'static str| StoreError::InvalidValue {
            field: name.clone(),
            expected,
            supported: vec![],
        };
        match field.kind {
            Kind::Id | Kind::Time | Kind::User { writable: false } | Kind::Territories => {
                Err(StoreError::ReadOnly { field: name })
            }
            Kind::Text { max, required } => match value {
                Value::Null if required => Err(StoreError::Missing { field: name }),
                Value::String(s) if required && s.trim().is_empty() => {
                    Err(StoreError::Missing { field: name })
                }
                Value::Null => Ok(Value::Null),
                Value::String(s) if s.chars().count() > max => {
                    Err(StoreError::TooLong { field: name, max })
                }
                Value::String(_) => Ok(value.clone()),
                _ => Err(invalid("text")),
            },
            Kind::TerritoryPicklist => match value {
                Value::Null => Ok(Value::Null),
                Value::String(s) if self.territories.iter().any(|t| t.name == s) => {
                    Ok(value.clone())
                }
                _ => Err(StoreError::InvalidValue {
                    field: name,
                    expected: "picklist",
                    supported: self
                        .territories
                        .iter()
                        .map(|t| t.name.to_string())
                        .collect(),
                }),
            },
            Kind::Integer => match value {
                Value::Null => Ok(Value::Null),
                Value::Number(n) if n.is_i64() => Ok(value.clone()),
                _ => Err(invalid("integer")),
            },
            Kind::Currency => match value {
                Value::Null => Ok(Value::Null),
                Value::Number(_) => Ok(value.clone()),
                _ => Err(invalid("double")),
            },
            Kind::User { writable: true } => {
                let id = value.get("id").and_then(|v| match v {
                    Value::String(s) => s.parse::<u64>().ok(),
                    Value::Number(n) => n.as_u64(),
                    _ => None,
                });
                match id.and_then(|id| id.checked_sub(seed::USER_BASE)) {
                    Some(n) if (n as usize) < seed::USERS.len() => Ok(seed::user(n as usize)),
                    _ => Err(invalid("lookup")),
                }
            }
            Kind::Lookup => match value {
                Value::Null => Ok(Value::Null),
                Value::Object(o) if o.contains_key("id") => Ok(value.clone()),
                _ => Err(invalid("lookup")),
            },
        }
    }

    fn parse_id(value: Option<&Value>) -> Result<u64, StoreError> {
        match value {
            None | Some(Value::Null) => Err(StoreError::Missing { field: "id".into() }),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map_err(|_| StoreError::UnknownRecord { id: s.clone() }),
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| StoreError::UnknownRecord { id: n.to_string() }),
            Some(other) => Err(StoreError::UnknownRecord {
                id: other.to_string(),
            }),
        }
    }

    /// Validates a record change and returns the record as it would be after it.
    fn prepare(
        &self,
        module: &str,
        id: u64,
        changes: &Map<String, Value>,
        unmodified_since: Option<i64>,
    ) -> Result<Map<String, Value>, StoreError> {
        let mut record = self
            .get(module, id)
            .ok_or_else(|| StoreError::UnknownRecord { id: id.to_string() })?;
        if let Some(since) = unmodified_since {
            let modified = text(&record, "Modified_Time");
            if coql::parse_time(&modified).is_some_and(|m| m > since) {
                return Err(StoreError::Modified {
                    id: id.to_string(),
                    modified_time: modified,
                });
            }
        }
        for (key, value) in changes {
            if key == "id" || key.starts_with('$') {
                continue;
            }
            let field = self
                .field(module, key)
                .ok_or_else(|| StoreError::UnknownField { field: key.clone() })?;
            let value = self.check_value(&field, value)?;
            record.insert(key.clone(), value);
        }
        Ok(record)
    }

    fn commit(
        &mut self,
        module: &str,
        id: u64,
        mut record: Map<String, Value>,
        by: Value,
    ) -> Written {
        let before = coql::parse_time(&text(&record, "Modified_Time")).unwrap_or(0);
        // Strictly later than before, so an If-Unmodified-Since taken from a read always
        // notices a change, even within the same second.
        let modified = seed::format_time(now_unix().max(before + 1));
        record.insert("Modified_Time".into(), json!(modified));
        record.insert("Modified_By".into(), by.clone());
        let written = Written {
            id: id.to_string(),
            modified_time: modified,
            modified_by: by,
            created_time: record.get("Created_Time").cloned().unwrap_or(Value::Null),
            created_by: record.get("Created_By").cloned().unwrap_or(Value::Null),
        };
        self.modules
            .get_mut(module)
            .expect("known module")
            .changed
            .insert(id, record);
        self.version += 1;
        written
    }

    /// Update Records: each item is `{"id": ..., field: value, ...}`; results in input order.
    pub fn update(
        &mut self,
        module: &str,
        items: &[Value],
        unmodified_since: Option<i64>,
    ) -> Vec<Result<Written, StoreError>> {
        let mut seen = HashSet::new();
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let result = (|| {
                let Some(changes) = item.as_object() else {
                    return Err(StoreError::InvalidValue {
                        field: "data".into(),
                        expected: "jsonobject",
                        supported: vec![],
                    });
                };
                let id = Self::parse_id(changes.get("id"))?;
                if !seen.insert(id) {
                    return Err(StoreError::DuplicateId { id: id.to_string() });
                }
                let record = self.prepare(module, id, changes, unmodified_since)?;
                Ok(self.commit(module, id, record, seed::api_user()))
            })();
            results.push(result);
        }
        results
    }

    /// A change made by a person in the CRM UI (a test hook): same checks as the API,
    /// attributed to the record's owner.
    pub fn edit(
        &mut self,
        module: &str,
        id: u64,
        changes: &Map<String, Value>,
    ) -> Result<Map<String, Value>, StoreError> {
        let mut record = self
            .get(module, id)
            .ok_or_else(|| StoreError::UnknownRecord { id: id.to_string() })?;
        for (key, value) in changes {
            let field = self
                .field(module, key)
                .ok_or_else(|| StoreError::UnknownField { field: key.clone() })?;
            let value = match field.kind {
                // People in the UI change memberships directly.
                Kind::Territories => value.clone(),
                _ => self.check_value(&field, value)?,
            };
            record.insert(key.clone(), value);
        }
        let owner = record.get("Owner").cloned().unwrap_or_else(seed::api_user);
        self.commit(module, id, record, owner);
        Ok(self.get(module, id).expect("just written"))
    }

    pub fn pending_job(&self, record: u64) -> Option<&String> {
        self.pending.get(&record)
    }

    /// Checks an assign/remove item; returns the record id and territory ids.
    pub fn check_territory_change(
        &self,
        module: &str,
        item: &Value,
        url_id: Option<u64>,
        remove: bool,
        seen: &mut HashSet<u64>,
    ) -> Result<(u64, Vec<u64>), StoreError> {
        let field_name = if module == "Deals" {
            "Territory"
        } else {
            "Territories"
        };
        let id = match url_id {
            Some(id) => id,
            None => Self::parse_id(item.get("id"))?,
        };
        if !seen.insert(id) {
            return Err(StoreError::DuplicateId { id: id.to_string() });
        }
        let record = self
            .get(module, id)
            .ok_or_else(|| StoreError::UnknownRecord { id: id.to_string() })?;
        if let Some(job) = self.pending.get(&id) {
            return Err(StoreError::AlreadyScheduled {
                job_id: job.clone(),
            });
        }
        let list = item
            .get("Territories")
            .or_else(|| item.get("Territory"))
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| StoreError::Missing {
                field: field_name.into(),
            })?;
        let current = membership(&record);
        let mut ids: Vec<u64> = Vec::new();
        for (index, t) in list.iter().enumerate() {
            let raw = t.get("id").map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            let Some(raw) = raw else {
                return Err(StoreError::Missing {
                    field: format!("{field_name}[{index}].id"),
                });
            };
            let tid = raw
                .parse::<u64>()
                .ok()
                .filter(|tid| self.territory(*tid).is_some())
                .ok_or_else(|| StoreError::UnknownTerritory {
                    index,
                    id: raw.clone(),
                })?;
            if let Some(first) = ids.iter().position(|&x| x == tid) {
                return Err(StoreError::TerritoryRepeated {
                    index,
                    first,
                    id: raw,
                });
            }
            match current.iter().find(|(cid, _)| *cid == tid) {
                Some(_) if !remove => return Err(StoreError::TerritoryAssigned { index, id: raw }),
                None if remove => return Err(StoreError::TerritoryNotAssigned { index, id: raw }),
                Some((_, true)) if remove => {
                    return Err(StoreError::TerritorySystemAssigned { index, id: raw })
                }
                _ => {}
            }
            ids.push(tid);
        }
        let limit = if module == "Deals" { 1 } else { 10 };
        if !remove && current.len() + ids.len() > limit {
            return Err(StoreError::TerritoryLimit { limit });
        }
        Ok((id, ids))
    }

    /// Applies a checked assign/remove.
    pub fn change_territories(&mut self, module: &str, change: &PendingChange) -> Written {
        let field_name = if module == "Deals" {
            "Territory"
        } else {
            "Territories"
        };
        let mut record = self.get(module, change.record).expect("checked record");
        let mut list = record
            .get(field_name)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if change.remove {
            list.retain(|m| {
                let id = m["id"].as_str().and_then(|s| s.parse::<u64>().ok());
                !id.is_some_and(|id| change.territories.contains(&id))
            });
        } else {
            let at = seed::format_time(now_unix());
            for tid in &change.territories {
                let name = self.territory(*tid).map_or("", |t| t.name);
                list.push(
                    json!({"Name": name, "id": tid.to_string(), "$assigned": "manually",
                                 "$assigned_time": at, "$assigned_by": seed::api_user()}),
                );
            }
        }
        record.insert(field_name.into(), Value::Array(list));
        self.pending.remove(&change.record);
        self.commit(module, change.record, record, seed::api_user())
    }

    pub fn schedule(&mut self, record: u64, job_id: &str) {
        self.pending.insert(record, job_id.to_string());
    }
}

fn text(r: &Map<String, Value>, key: &str) -> String {
    r.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// A record's memberships as `(territory id, rule-assigned)`.
fn membership(r: &Map<String, Value>) -> Vec<(u64, bool)> {
    r.get("Territories")
        .or_else(|| r.get("Territory"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|m| {
                    let id = m.get("id")?.as_str()?.parse().ok()?;
                    Some((
                        id,
                        m.get("$assigned").and_then(Value::as_str) == Some("automatically"),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// COQL shows memberships as `{name, id}`.
fn coql_territories(v: &Value) -> Value {
    match v.as_array() {
        Some(list) if !list.is_empty() => Value::Array(
            list.iter()
                .map(|m| json!({"name": m.get("Name").cloned().unwrap_or(Value::Null), "id": m.get("id").cloned().unwrap_or(Value::Null)}))
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// `id` plus the requested fields (null where the record has no value).
fn project(r: &Map<String, Value>, fields: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    for f in fields {
        out.insert(f.clone(), r.get(f).cloned().unwrap_or(Value::Null));
    }
    out.insert("id".into(), r.get("id").cloned().unwrap_or(Value::Null));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Store {
        Store::new(SeedSpec {
            name: "demo".into(),
            layout: Layout::Field,
            accounts: 2500,
        })
    }

    #[test]
    fn update_validates_every_record_and_keeps_order() {
        let mut s = demo();
        let a = seed::account_id(1).to_string();
        let items = vec![
            json!({"id": a, "Territory": "DACH"}),
            json!({"id": "1", "Territory": "DACH"}),
            json!({"id": a, "Territory": "EMEA"}),
            json!({"id": seed::account_id(2).to_string(), "Territory": "Atlantis"}),
            json!({"id": seed::account_id(3).to_string(), "Nope": 1}),
        ];
        let r = s.update("Accounts", &items, None);
        assert!(r[0].is_ok());
        assert!(matches!(r[1], Err(StoreError::UnknownRecord { .. })));
        assert!(matches!(r[2], Err(StoreError::DuplicateId { .. })));
        assert!(matches!(
            r[3],
            Err(StoreError::InvalidValue {
                expected: "picklist",
                ..
            })
        ));
        assert!(matches!(r[4], Err(StoreError::UnknownField { .. })));
        assert_eq!(
            s.get("Accounts", seed::account_id(1)).unwrap()["Territory"],
            "DACH"
        );
    }

    #[test]
    fn snapshot_round_trips_changes_only() {
        let mut s = demo();
        let id = seed::account_id(9);
        s.update(
            "Accounts",
            &[json!({"id": id.to_string(), "Territory": null})],
            None,
        );
        let snap = s.snapshot();
        assert_eq!(snap.changed["Accounts"].len(), 1);
        let t = Store::from_snapshot(
            serde_json::from_str(&serde_json::to_string(&snap).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(t.get("Accounts", id), s.get("Accounts", id));
    }

    #[test]
    fn keyset_coql_pages_cover_every_account_once() {
        let s = demo();
        let mut after = "0".to_string();
        let mut seen = 0;
        loop {
            let q = coql::parse(&format!(
                "select id, Territory from Accounts where id > '{after}' order by id asc limit 2000"
            ))
            .unwrap();
            let (rows, more) = s.coql(&q).unwrap();
            seen += rows.len();
            after = rows.last().unwrap()["id"].as_str().unwrap().to_string();
            if !more {
                break;
            }
        }
        assert_eq!(seen, 2500);
    }
}
