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
use crate::plan::{OrgState, Record};
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
        match answer.status.as_u16() {
            204 => break,
            200 => {}
            s => return Err(api_error(what, s, answer.body.as_ref())),
        }
        let body = answer
            .body
            .ok_or_else(|| garbage(what, "HTTP 200 with an empty body"))?;
        let rows = body
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| garbage(what, "no `data` array"))?;
        let more = body
            .get("info")
            .and_then(|i| i.get("more_records"))
            .and_then(Value::as_bool)
            .ok_or_else(|| garbage(what, "no `info.more_records`"))?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
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
    Ok(OrgState { records })
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
        fields,
        id,
    })
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
    let answer = client
        .call(
            class,
            Method::PUT,
            &path,
            &[],
            Some(&json!({ "data": data })),
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
