//! The endpoints realign uses: COQL reads of a module and multi-record updates.
//!
//! Reads use COQL because it is the cheapest full read the reference allows: 2,000 rows
//! a call (3 credits) against 200 a call for Get Records. Pages are keyset
//! (`where id > last order by id`), which avoids OFFSET's 100,000-row ceiling.

use reqwest::Method;
use serde_json::{json, Map, Value};

use super::error::ZohoError;
use super::http::Client;
use super::pacing::CallClass;
use crate::plan::{Assigned, Membership, OrgState, OrgTerritory, Record, TerritoryRef};
use crate::spec::{Id, Module};

pub const COQL_LIMIT: usize = 2000;
pub const UPDATE_MAX: usize = 100;

/// Checks a field API name before it goes into a query.
pub fn check_field_name(name: &str) -> Result<(), ZohoError> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(ZohoError::Config(format!(
            "`{name}` is not a Zoho field API name (letters, digits and underscores)"
        )))
    }
}

/// What to read: the record's name, its territory field, the fields rules use.
pub struct ReadRequest<'a> {
    pub module: Module,
    pub territory_field: Option<&'a str>,
    pub rule_fields: &'a [String],
}

impl ReadRequest<'_> {
    pub fn columns(&self) -> Vec<String> {
        let mut cols = vec!["id".to_string(), self.module.name_field().to_string()];
        if let Some(f) = self.territory_field {
            cols.push(f.to_string());
        }
        cols.extend(self.rule_fields.iter().cloned());
        cols.push("Modified_Time".to_string());
        let mut seen = std::collections::HashSet::new();
        cols.retain(|c| seen.insert(c.clone()));
        cols
    }
}

/// Reads every record of the module, page by page; `progress` gets the running count.
pub async fn fetch_all(
    client: &Client,
    req: &ReadRequest<'_>,
    progress: impl FnMut(usize),
) -> Result<OrgState, ZohoError> {
    fetch_where(client, req, None, progress).await
}

/// Reads the records with these ids (any number; 100 ids a call, COQL's `in` limit).
pub async fn fetch_ids(
    client: &Client,
    req: &ReadRequest<'_>,
    ids: &[Id],
) -> Result<OrgState, ZohoError> {
    let mut out = OrgState::default();
    for chunk in ids.chunks(100) {
        let list = chunk
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let part = fetch_where(client, req, Some(&format!("id in ({list})")), |_| {}).await?;
        out.records.extend(part.records);
    }
    out.records
        .sort_by(|a, b| a.id.numeric_key().cmp(&b.id.numeric_key()));
    Ok(out)
}

async fn fetch_where(
    client: &Client,
    req: &ReadRequest<'_>,
    extra: Option<&str>,
    mut progress: impl FnMut(usize),
) -> Result<OrgState, ZohoError> {
    let cols = req.columns();
    for c in &cols {
        check_field_name(c)?;
    }
    let select = cols.join(", ");
    let mut records = Vec::new();
    let mut last: Option<Id> = None;
    loop {
        let mut filter = match &last {
            None => "id is not null".to_string(),
            Some(id) => format!("id > {id}"),
        };
        if let Some(extra) = extra {
            filter = format!("({filter}) and ({extra})");
        }
        let query = format!(
            "select {select} from {} where {filter} order by id asc limit {COQL_LIMIT}",
            req.module
        );
        let answer = client
            .call(
                CallClass::Heavy,
                Method::POST,
                "/crm/v8/coql",
                &[],
                Some(&json!({ "select_query": query })),
            )
            .await?;
        let what = "a COQL read";
        let Some((body, rows)) = list_page(answer, what, "data")? else {
            break;
        };
        let more = body
            .get("info")
            .and_then(|i| i.get("more_records"))
            .and_then(Value::as_bool)
            .ok_or_else(|| garbage(what, "no `info.more_records`"))?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let rec = parse_row(row, req).map_err(|d| garbage(what, &d))?;
            if let Some(prev) = &last {
                if rec.id.numeric_key() <= prev.numeric_key() {
                    return Err(garbage(what, "rows are not in ascending id order"));
                }
            }
            last = Some(rec.id.clone());
            records.push(rec);
        }
        progress(records.len());
        if !more || rows.len() < COQL_LIMIT {
            break;
        }
    }
    Ok(OrgState {
        records,
        territories: Vec::new(),
    })
}

/// A page of a list answer: None for 204 (nothing there), else the body and the array
/// under `key`; any other status is Zoho's error.
fn list_page(
    answer: super::http::Answer,
    what: &str,
    key: &str,
) -> Result<Option<(Value, Vec<Value>)>, ZohoError> {
    match answer.status.as_u16() {
        204 => return Ok(None),
        200 => {}
        s => return Err(api_error(what, s, answer.body.as_ref())),
    }
    let body = answer
        .body
        .ok_or_else(|| garbage(what, "HTTP 200 with an empty body"))?;
    let items = body
        .get(key)
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| garbage(what, &format!("no `{key}` array")))?;
    Ok(Some((body, items)))
}

fn parse_row(row: &Value, req: &ReadRequest<'_>) -> Result<Record, String> {
    let obj = row.as_object().ok_or("a row is not an object")?;
    let id = match obj.get("id") {
        Some(Value::String(s)) => Id::parse(s)?,
        Some(Value::Number(n)) if n.is_u64() => Id::parse(&n.to_string())?,
        _ => return Err("a row has no string `id`".into()),
    };
    let text = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            Value::Object(m) => m
                .get("name")
                .or_else(|| m.get("Name"))
                .and_then(Value::as_str)
                .map(str::to_string),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let mut fields = Map::new();
    for f in req.rule_fields {
        fields.insert(f.clone(), obj.get(f).cloned().unwrap_or(Value::Null));
    }
    Ok(Record {
        name: text(obj.get(req.module.name_field())),
        territory: req.territory_field.and_then(|f| text(obj.get(f))),
        modified_time: text(obj.get("Modified_Time")),
        memberships: match obj.get(territories_field(req.module)) {
            Some(v) => parse_memberships(v)?,
            None => Vec::new(),
        },
        fields,
        id,
    })
}

/// The record field that holds Territory Management memberships (reference §4.4).
pub fn territories_field(module: Module) -> &'static str {
    match module {
        Module::Deals => "Territory",
        _ => "Territories",
    }
}

/// Reads a `Territories` value: a list (or, on Deals, one object) of `{Name|name, id,
/// $assigned}`; null or absent is no membership. COQL answers lack `$assigned`, which
/// reads as [`Assigned::Unknown`].
pub fn parse_memberships(v: &Value) -> Result<Vec<Membership>, String> {
    let items: Vec<&Value> = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![v],
        _ => return Err("`Territories` is neither a list nor null".into()),
    };
    items
        .into_iter()
        .map(|m| {
            let id = match m.get("id") {
                Some(Value::String(s)) => Id::parse(s)?,
                Some(Value::Number(n)) => Id::parse(&n.to_string())?,
                _ => return Err("a territory membership has no `id`".to_string()),
            };
            let name = m
                .get("Name")
                .or_else(|| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let assigned = match m.get("$assigned").and_then(Value::as_str) {
                Some("manually") => Assigned::Manually,
                Some("automatically") => Assigned::Automatically,
                _ => Assigned::Unknown,
            };
            Ok(Membership { id, name, assigned })
        })
        .collect()
}

/// `GET /crm/v8/settings/territories`, every page (up to 2,000 a page).
pub async fn fetch_territories(client: &Client) -> Result<Vec<OrgTerritory>, ZohoError> {
    let what = "the territory list";
    let mut out = Vec::new();
    for page in 1.. {
        let answer = client
            .call(
                CallClass::Light,
                Method::GET,
                "/crm/v8/settings/territories",
                &[("per_page", "2000".to_string()), ("page", page.to_string())],
                None,
            )
            .await?;
        let Some((body, list)) = list_page(answer, what, "territories")? else {
            break;
        };
        for t in &list {
            let id = t
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| Id::parse(s).ok())
                .ok_or_else(|| garbage(what, "a territory without a string `id`"))?;
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let parent = t
                .get("reporting_to")
                .filter(|p| !p.is_null())
                .and_then(|p| {
                    Some(TerritoryRef {
                        id: Id::parse(p.get("id")?.as_str()?).ok()?,
                        name: p
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    })
                });
            out.push(OrgTerritory { id, name, parent });
        }
        let more = body
            .get("info")
            .and_then(|i| i.get("more_records"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !more || list.is_empty() {
            break;
        }
    }
    Ok(out)
}

/// Reads every record with Get Records, following `next_page_token` (200 a page).
///
/// Native mode reads this way, not with COQL, because ownership matters: COQL returns
/// memberships as `{name, id}` without `$assigned` (reference §4.4, §6), and realign must
/// know which memberships a Zoho rule holds before it plans a removal. Get Records is the
/// cheapest read that may carry `$assigned` on the list endpoint (unconfirmed, Q9); where
/// it does not, memberships read as `Unknown` and realign asks record by record (see
/// [`fill_unknown_ownership`]).
pub async fn fetch_all_listed(
    client: &Client,
    req: &ReadRequest<'_>,
    ids: Option<&[Id]>,
) -> Result<OrgState, ZohoError> {
    let mut cols: Vec<String> = req.columns().into_iter().filter(|c| c != "id").collect();
    cols.push(territories_field(req.module).to_string());
    cols.dedup();
    for c in &cols {
        check_field_name(c)?;
    }
    if cols.len() > 50 {
        return Err(ZohoError::Config(format!(
            "native mode reads {} fields, over Get Records' limit of 50: use fewer fields in the rules",
            cols.len()
        )));
    }
    let what = "a Get Records read";
    let path = format!("/crm/v8/{}", req.module);
    let mut records = Vec::new();
    let chunks: Vec<Option<String>> = match ids {
        None => vec![None],
        Some(ids) => ids
            .chunks(100)
            .map(|c| Some(c.iter().map(Id::to_string).collect::<Vec<_>>().join(",")))
            .collect(),
    };
    for chunk in chunks {
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("fields", cols.join(",")), ("per_page", "200".to_string())];
            if let Some(ids) = &chunk {
                query.push(("ids", ids.clone()));
            }
            if let Some(t) = &token {
                query.push(("page_token", t.clone()));
            }
            let answer = client
                .call(CallClass::Light, Method::GET, &path, &query, None)
                .await?;
            let Some((body, rows)) = list_page(answer, what, "data")? else {
                break;
            };
            for row in &rows {
                records.push(parse_row(row, req).map_err(|d| garbage(what, &d))?);
            }
            let info = body.get("info");
            let more = info
                .and_then(|i| i.get("more_records"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            token = info
                .and_then(|i| i.get("next_page_token"))
                .and_then(Value::as_str)
                .map(str::to_string);
            if !more || rows.is_empty() {
                break;
            }
            if token.is_none() {
                return Err(garbage(what, "`more_records` without a `next_page_token`"));
            }
        }
    }
    records.sort_by(|a, b| a.id.numeric_key().cmp(&b.id.numeric_key()));
    records.dedup_by(|a, b| a.id == b.id);
    Ok(OrgState {
        records,
        territories: Vec::new(),
    })
}

/// One record with every field (`GET /crm/v8/{module}/{id}`), or None when there is none.
pub async fn fetch_one(
    client: &Client,
    req: &ReadRequest<'_>,
    id: &Id,
) -> Result<Option<Record>, ZohoError> {
    let path = format!("/crm/v8/{}/{id}", req.module);
    let answer = client
        .call(CallClass::Light, Method::GET, &path, &[], None)
        .await?;
    let what = "a single-record read";
    match answer.status.as_u16() {
        204 | 404 => return Ok(None),
        200 => {}
        400 if answer
            .body
            .as_ref()
            .and_then(|b| b.get("code"))
            .and_then(Value::as_str)
            == Some("INVALID_DATA") =>
        {
            return Ok(None)
        }
        s => return Err(api_error(what, s, answer.body.as_ref())),
    }
    let body = answer
        .body
        .ok_or_else(|| garbage(what, "HTTP 200 with an empty body"))?;
    let row = body
        .get("data")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .ok_or_else(|| garbage(what, "no `data[0]`"))?;
    parse_row(row, req).map(Some).map_err(|d| garbage(what, &d))
}

/// Where the list read did not say who assigned a membership, asks record by record,
/// and only for records that hold a membership `needs` says matters.
pub async fn fill_unknown_ownership(
    client: &Client,
    req: &ReadRequest<'_>,
    org: &mut OrgState,
    needs: impl Fn(&Membership) -> bool,
) -> Result<usize, ZohoError> {
    let mut asked = 0;
    for rec in org.records.iter_mut() {
        if !rec
            .memberships
            .iter()
            .any(|m| m.assigned == Assigned::Unknown && needs(m))
        {
            continue;
        }
        asked += 1;
        if let Some(full) = fetch_one(client, req, &rec.id).await? {
            rec.memberships = full.memberships;
        }
    }
    Ok(asked)
}

/// What happened to one record in an assign or remove call.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionOutcome {
    Done,
    /// Accepted as a background job (HTTP 202 `SCHEDULED`), or one is already pending.
    Scheduled {
        job_id: Option<String>,
    },
    /// Already as wanted: assigned on assign (`DUPLICATE_DATA`), not assigned on remove.
    Converged,
    /// The membership is held by a Zoho territory rule (`NOT_ALLOWED` on remove).
    HeldByRule {
        message: String,
    },
    Failed {
        code: String,
        message: String,
    },
}

/// `POST /crm/v8/{module}/actions/{assign|remove}_territories` for up to 10 records.
pub async fn territory_action(
    client: &Client,
    module: Module,
    remove: bool,
    batch: &[(Id, Vec<Id>)],
) -> Result<Vec<ActionOutcome>, ZohoError> {
    assert!(
        !batch.is_empty() && batch.len() <= 10,
        "batch of {} records",
        batch.len()
    );
    let data: Vec<Value> = batch
        .iter()
        .map(|(id, ts)| {
            json!({"id": id.as_str(), "Territories": ts.iter().map(|t| json!({"id": t.as_str()})).collect::<Vec<_>>()})
        })
        .collect();
    let action = if remove {
        "remove_territories"
    } else {
        "assign_territories"
    };
    let path = format!("/crm/v8/{module}/actions/{action}");
    let answer = client
        .call(
            CallClass::Light,
            Method::POST,
            &path,
            &[],
            Some(&json!({ "data": data })),
        )
        .await?;
    let what = if remove {
        "a territory removal"
    } else {
        "a territory assignment"
    };
    let status = answer.status.as_u16();
    let items = answer
        .body
        .as_ref()
        .and_then(|b| b.get("data"))
        .and_then(Value::as_array);
    let Some(items) = items else {
        return Err(api_error(what, status, answer.body.as_ref()));
    };
    if items.len() != batch.len() {
        return Err(garbage(
            what,
            &format!("{} results for {} records", items.len(), batch.len()),
        ));
    }
    // Every item is read whatever the HTTP status: Zoho's pages disagree on 207 vs 400
    // for mixed results (reference §1.2).
    Ok(items.iter().map(|i| action_outcome(i, remove)).collect())
}

fn action_outcome(item: &Value, remove: bool) -> ActionOutcome {
    let s = |k: &str| {
        item.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let job_id = item
        .get("details")
        .and_then(|d| d.get("job_id"))
        .and_then(|j| {
            j.as_str()
                .map(str::to_string)
                .or_else(|| j.as_u64().map(|n| n.to_string()))
        });
    let code = s("code");
    let message = s("message");
    match (s("status").as_str(), code.as_str()) {
        ("success", "SCHEDULED") => ActionOutcome::Scheduled { job_id },
        ("success", _) => ActionOutcome::Done,
        (_, "ALREADY_SCHEDULED") => ActionOutcome::Scheduled { job_id },
        (_, "DUPLICATE_DATA") if !remove => ActionOutcome::Converged,
        (_, "INVALID_DATA") if remove && message.to_lowercase().contains("not assigned") => {
            ActionOutcome::Converged
        }
        (_, "NOT_ALLOWED") if remove => ActionOutcome::HeldByRule { message },
        _ => {
            let mut message = message;
            if let Some(d) = item
                .get("details")
                .filter(|d| d.as_object().is_some_and(|m| !m.is_empty()))
            {
                message.push_str(&format!(" {d}"));
            }
            ActionOutcome::Failed {
                code: if code.is_empty() {
                    "UNKNOWN".into()
                } else {
                    code
                },
                message,
            }
        }
    }
}

/// The org's id (`GET /crm/v8/org`), which tells orgs apart when they share an API host.
/// None when the org API is not available (no `ZohoCRM.org.READ` scope, or a server that
/// does not serve it): the caller then relies on the API host alone.
pub async fn org_id(client: &Client) -> Option<String> {
    let answer = client
        .call(CallClass::Light, Method::GET, "/crm/v8/org", &[], None)
        .await
        .ok()?;
    if answer.status.as_u16() != 200 {
        tracing::debug!(status = answer.status.as_u16(), "no org id");
        return None;
    }
    let org = answer.body?.get("org")?.as_array()?.first()?.clone();
    org.get("zgid").or_else(|| org.get("id")).and_then(|v| {
        v.as_str()
            .map(str::to_string)
            .or_else(|| v.as_u64().map(|n| n.to_string()))
    })
}

/// One record's result from a write.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Updated { modified_time: Option<String> },
    Failed { code: String, message: String },
}

/// `PUT /crm/v8/{module}` with up to 100 records; results in input order.
pub async fn update(
    client: &Client,
    module: Module,
    field: &str,
    batch: &[(Id, Option<String>)],
    if_unmodified_since: Option<&str>,
) -> Result<Vec<Outcome>, ZohoError> {
    assert!(
        !batch.is_empty() && batch.len() <= UPDATE_MAX,
        "batch of {} records",
        batch.len()
    );
    let data: Vec<Value> = batch
        .iter()
        .map(|(id, v)| {
            let mut m = Map::new();
            m.insert("id".into(), Value::String(id.to_string()));
            m.insert(
                field.to_string(),
                v.clone().map(Value::String).unwrap_or(Value::Null),
            );
            Value::Object(m)
        })
        .collect();
    // More than 10 records puts an update in Zoho's sub-concurrency pool (reference §8.2).
    let class = if batch.len() > 10 {
        CallClass::Heavy
    } else {
        CallClass::Light
    };
    let path = format!("/crm/v8/{module}");
    // Optimistic concurrency: Zoho refuses (412 `ALREADY_MODIFIED`) any record changed
    // after the newest state this batch was planned against.
    let headers: Vec<(&str, String)> = if_unmodified_since
        .map(|t| vec![("If-Unmodified-Since", t.to_string())])
        .unwrap_or_default();
    let answer = client
        .call_with_headers(
            class,
            Method::PUT,
            &path,
            &[],
            Some(&json!({ "data": data })),
            &headers,
        )
        .await?;
    let what = "a record update";
    let status = answer.status.as_u16();
    let body = answer.body;
    let items = body
        .as_ref()
        .and_then(|b| b.get("data"))
        .and_then(Value::as_array);
    let Some(items) = items else {
        return Err(api_error(what, status, body.as_ref()));
    };
    if !matches!(status, 200 | 201 | 202 | 207 | 400 | 412) {
        return Err(api_error(what, status, body.as_ref()));
    }
    if items.len() != batch.len() {
        return Err(garbage(
            what,
            &format!("{} results for {} records", items.len(), batch.len()),
        ));
    }
    // Zoho answers in input order (reference §11): position, not `details.id`, ties a
    // result to its record, since error items may carry no id.
    Ok(items.iter().map(outcome).collect())
}

fn outcome(item: &Value) -> Outcome {
    let s = |k: &str| {
        item.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if s("status") == "success" {
        Outcome::Updated {
            modified_time: item
                .get("details")
                .and_then(|d| d.get("Modified_Time"))
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    } else {
        let mut message = s("message");
        if let Some(d) = item
            .get("details")
            .filter(|d| d.as_object().is_some_and(|m| !m.is_empty()))
        {
            message.push_str(&format!(" {d}"));
        }
        Outcome::Failed {
            code: if s("code").is_empty() {
                "UNKNOWN".into()
            } else {
                s("code")
            },
            message,
        }
    }
}

pub fn api_error(what: &str, status: u16, body: Option<&Value>) -> ZohoError {
    let get = |k: &str| {
        body.and_then(|b| b.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let code = get("code");
    if code.is_empty() {
        return garbage(what, &format!("HTTP {status} without a Zoho error code"));
    }
    let mut message = get("message");
    if let Some(d) = body
        .and_then(|b| b.get("details"))
        .filter(|d| d.as_object().is_some_and(|m| !m.is_empty()))
    {
        message.push_str(&format!(" {d}"));
    }
    ZohoError::Api {
        what: what.to_string(),
        status,
        code,
        message,
    }
}

fn garbage(what: &str, detail: &str) -> ZohoError {
    ZohoError::Garbage {
        what: what.to_string(),
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_cannot_smuggle_query_text() {
        assert!(check_field_name("Billing_Country").is_ok());
        assert!(check_field_name("Account_Name.Territories").is_ok());
        assert!(check_field_name("x from Leads where").is_err());
        assert!(check_field_name("a'b").is_err());
        assert!(check_field_name("").is_err());
    }

    #[test]
    fn reads_only_the_columns_it_needs_once_each() {
        let rules = vec!["Billing_Country".to_string(), "Territory".to_string()];
        let r = ReadRequest {
            module: Module::Accounts,
            territory_field: Some("Territory"),
            rule_fields: &rules,
        };
        assert_eq!(
            r.columns(),
            vec![
                "id",
                "Account_Name",
                "Territory",
                "Billing_Country",
                "Modified_Time"
            ]
        );
    }

    #[test]
    fn reads_memberships_in_both_shapes() {
        let v = json!([
            {"Name": "Texas", "id": "111", "$assigned": "automatically"},
            {"name": "South", "id": "222"},
        ]);
        let m = parse_memberships(&v).unwrap();
        assert_eq!(m[0].assigned, Assigned::Automatically);
        assert_eq!(
            (m[1].name.as_str(), m[1].assigned),
            ("South", Assigned::Unknown)
        );
        assert!(parse_memberships(&Value::Null).unwrap().is_empty());
        assert!(parse_memberships(&json!("x")).is_err());
    }

    #[test]
    fn territory_action_items_map_to_what_realign_does_next() {
        let item = |code: &str, status: &str, message: &str| json!({"code": code, "status": status, "message": message, "details": {"job_id": "9"}});
        assert_eq!(
            action_outcome(&item("SUCCESS", "success", ""), false),
            ActionOutcome::Done
        );
        assert_eq!(
            action_outcome(&item("SCHEDULED", "success", ""), false),
            ActionOutcome::Scheduled {
                job_id: Some("9".into())
            }
        );
        assert_eq!(
            action_outcome(&item("DUPLICATE_DATA", "error", ""), false),
            ActionOutcome::Converged
        );
        assert_eq!(
            action_outcome(
                &item(
                    "INVALID_DATA",
                    "error",
                    "territory not assigned to this record"
                ),
                true
            ),
            ActionOutcome::Converged
        );
        assert!(matches!(
            action_outcome(
                &item("INVALID_DATA", "error", "the id given seems to be invalid"),
                true
            ),
            ActionOutcome::Failed { .. }
        ));
        assert!(matches!(
            action_outcome(&item("NOT_ALLOWED", "error", "system assigned"), true),
            ActionOutcome::HeldByRule { .. }
        ));
        assert!(matches!(
            action_outcome(&item("LIMIT_EXCEEDED", "error", ""), false),
            ActionOutcome::Failed { .. }
        ));
    }

    #[test]
    fn maps_result_items_to_outcomes() {
        let ok = json!({"code":"SUCCESS","status":"success","message":"record updated","details":{"id":"1","Modified_Time":"t"}});
        assert_eq!(
            outcome(&ok),
            Outcome::Updated {
                modified_time: Some("t".into())
            }
        );
        let bad = json!({"code":"INVALID_DATA","status":"error","message":"invalid data","details":{"api_name":"Territory"}});
        let Outcome::Failed { code, message } = outcome(&bad) else {
            panic!()
        };
        assert_eq!(code, "INVALID_DATA");
        assert!(message.contains("Territory"));
    }
}
