//! Bulk Write and Bulk Read: uploaded zipped CSVs, jobs that progress in the background
//! (`ADDED`, `IN PROGRESS`, `COMPLETED`), and zipped CSV results.
//!
//! Bulk Write supports the `update` operation found by `id` (the one a reconciler needs);
//! Bulk Read exports one module with optional criteria, 200,000 records a page.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Cursor, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::coql::{Cond, Literal, Op};
use super::routes::{zoho_error, Answer, App, Payload};
use super::seed;
use super::store::{Kind, StoreError};

pub const MAX_ZIP_BYTES: usize = 25 * 1024 * 1024;
pub const MAX_ROWS: usize = 25_000;
pub const MAX_COLUMNS: usize = 200;
pub const READ_PAGE: usize = 200_000;
pub const DOWNLOADS_PER_MINUTE: usize = 10;

struct Upload {
    /// `(file name, CSV bytes)` for every CSV in the zip.
    files: Vec<(String, Vec<u8>)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Added,
    InProgress,
    Completed,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Added => "ADDED",
            State::InProgress => "IN PROGRESS",
            State::Completed => "COMPLETED",
        }
    }
}

struct WriteJob {
    request: Value,
    module: String,
    file_name: String,
    state: State,
    created_time: String,
    counts: (usize, usize, usize),
    result: Option<Vec<u8>>,
}

struct ReadJob {
    query: Value,
    state: State,
    created_time: String,
    page: usize,
    count: usize,
    more: bool,
    result: Option<Vec<u8>>,
}

/// Uploaded files and jobs.
#[derive(Default)]
pub struct Bulk {
    uploads: BTreeMap<String, Upload>,
    writes: BTreeMap<String, WriteJob>,
    reads: BTreeMap<String, ReadJob>,
    downloads: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

fn now_text() -> String {
    seed::format_time(chrono::Utc::now().timestamp())
}

fn creator() -> Value {
    let u = seed::api_user();
    json!({"id": u["id"], "name": u["name"]})
}

fn bad(code: &str, message: &str, details: Value) -> Answer {
    Answer::bad(code, message, details)
}

/// The `file` part of a `multipart/form-data` body.
fn multipart_file(headers: &HeaderMap, body: &[u8]) -> Option<Vec<u8>> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(at) = find(rest, &delimiter) {
        parts.push(&rest[..at]);
        rest = &rest[at + delimiter.len()..];
    }
    parts.into_iter().skip(1).find_map(|part| {
        let split = find(part, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&part[..split]).to_ascii_lowercase();
        if !head.contains("name=\"file\"") {
            return None;
        }
        let content = &part[split + 4..];
        Some(content.strip_suffix(b"\r\n").unwrap_or(content).to_vec())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn unzip(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).ok()?;
    let mut files = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).ok()?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().rsplit('/').next().unwrap_or("").to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).ok()?;
        files.push((name, data));
    }
    Some(files)
}

fn zip_one(name: &str, data: &[u8]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    writer.start_file(name, options).expect("in-memory zip");
    writer.write_all(data).expect("in-memory zip");
    writer.finish().expect("in-memory zip").into_inner()
}

/// `POST /crm/v8/upload`: needs `feature: bulk-write` and the org's `X-CRM-ORG`.
pub(crate) fn upload(app: &Arc<App>, headers: &HeaderMap, body: &Bytes) -> Answer {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("feature") != Some("bulk-write") || header("X-CRM-ORG") != Some(seed::ORG_ID) {
        return bad(
            "INVALID_REQUEST",
            "check if headers [feature, X-CRM-ORG] are present and valid",
            json!({}),
        );
    }
    let Some(file) = multipart_file(headers, body) else {
        return bad(
            "MANDATORY_NOT_FOUND",
            "required field not found",
            json!({"api_name": "file"}),
        );
    };
    if file.len() > MAX_ZIP_BYTES {
        return bad(
            "FILE_TOO_LARGE",
            "File size too large to process",
            json!({"limit": MAX_ZIP_BYTES}),
        );
    }
    let Some(files) = unzip(&file).filter(|f| !f.is_empty()) else {
        return bad(
            "INVALID_FILE_FORMAT",
            "invalid file format. only zip format is supported",
            json!({}),
        );
    };
    let file_id = app.new_job_id();
    let created = now_text();
    app.bulk
        .lock()
        .unwrap()
        .uploads
        .insert(file_id.clone(), Upload { files });
    Answer::ok(json!({
        "status": "success",
        "code": "FILE_UPLOAD_SUCCESS",
        "message": "file uploaded.",
        "details": {"file_id": file_id, "created_time": created},
    }))
}

/// Converts a CSV cell for `kind`; `None` means "leave the field alone".
fn cell_value(kind: Kind, raw: &str, ignore_empty: bool) -> Option<Value> {
    if raw.is_empty() {
        return (!ignore_empty).then_some(Value::Null);
    }
    Some(match kind {
        Kind::Integer => raw
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| json!(raw)),
        Kind::Currency => raw
            .parse::<f64>()
            .map(Value::from)
            .unwrap_or_else(|_| json!(raw)),
        Kind::User { .. } | Kind::Lookup => json!({ "id": raw }),
        _ => json!(raw),
    })
}

fn error_column(e: &StoreError) -> (&'static str, String) {
    match e {
        StoreError::UnknownRecord { .. } => ("RESOURCE_NOT_FOUND", "id".into()),
        StoreError::Missing { field } => ("MANDATORY_NOT_FOUND", field.clone()),
        StoreError::InvalidValue { field, .. }
        | StoreError::TooLong { field, .. }
        | StoreError::ReadOnly { field }
        | StoreError::UnknownField { field } => ("INVALID_DATA", field.clone()),
        StoreError::DuplicateId { .. } => ("DUPLICATE_DATA", "id".into()),
        _ => ("CANNOT_PROCESS", String::new()),
    }
}

/// `POST /crm/bulk/v8/write`.
pub(crate) fn create_write(app: &Arc<App>, body: Value) -> Answer {
    let Some(operation) = body.get("operation").and_then(Value::as_str) else {
        return bad(
            "MANDATORY_NOT_FOUND",
            "required key operation is not found in request body.",
            json!({"api_name": "operation", "json_path": "$.operation"}),
        );
    };
    if operation != "update" {
        return bad(
            "NOT_SUPPORTED",
            "the sandbox supports only the update operation",
            json!({"api_name": "operation", "json_path": "$.operation", "supported_values": ["update"]}),
        );
    }
    if let Some(method) = body.pointer("/callback/method") {
        if method != "post" {
            return bad(
                "INVALID_CALLBACK_METHOD",
                "invalid callback method",
                json!({"supported_callback_methods": ["post"]}),
            );
        }
    }
    let Some(resource) = body
        .get("resource")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
    else {
        return bad(
            "MANDATORY_NOT_FOUND",
            "required key resource is not found in request body.",
            json!({"api_name": "resource", "json_path": "$.resource"}),
        );
    };
    let module_name = resource
        .pointer("/module/api_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let store = app.store.lock().unwrap();
    let Ok(module) = store.module(module_name) else {
        return bad(
            "MODULE_NOT_AVAILABLE",
            &format!("Requested module '{module_name}' is not available."),
            json!({"api_name": "module", "json_path": "$.resource[0].module"}),
        );
    };
    if resource.get("find_by").and_then(Value::as_str) != Some("id") {
        return bad(
            "MANDATORY_NOT_FOUND",
            "required key find_by is not found in request body.",
            json!({"api_name": "find_by", "json_path": "$.resource[0].find_by"}),
        );
    }
    let file_id = resource
        .get("file_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let bulk = app.bulk.lock().unwrap();
    let Some(upload) = bulk.uploads.get(file_id) else {
        return bad(
            "INVALID_FILE_ID",
            "improper file id",
            json!({"api_name": "file_id", "json_path": "$.resource[0].file_id"}),
        );
    };
    let (file_name, csv_bytes) = upload.files[0].clone();
    drop(bulk);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(csv_bytes.as_slice());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(str::to_string).collect(),
        Err(_) => {
            return bad(
                "INVALID_FILE_FORMAT",
                "File not supported for bulk write",
                json!({}),
            )
        }
    };
    if header.len() > MAX_COLUMNS {
        return bad(
            "HEADER_LIMIT_EXCEEDED",
            "too many columns in the file",
            json!({"limit": MAX_COLUMNS}),
        );
    }
    let mappings: Vec<(String, usize)> =
        match resource.get("field_mappings").and_then(Value::as_array) {
            Some(list) => list
                .iter()
                .filter_map(|m| {
                    Some((
                        m.get("api_name")?.as_str()?.to_string(),
                        m.get("index")?.as_u64()? as usize,
                    ))
                })
                .collect(),
            None => header
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, h)| (h, i))
                .collect(),
        };
    for (api_name, index) in &mappings {
        if store.field(module, api_name).is_none() {
            return bad(
                "INVALID_FIELD_NAME",
                &format!("invalid mapping. invalid api_name {api_name}."),
                json!({"api_name": api_name}),
            );
        }
        if *index >= header.len() {
            return bad(
                "COLUMN_INDEX_NOT_FOUND",
                "column index not found in the file",
                json!({"api_name": api_name, "index": index}),
            );
        }
    }
    if !mappings.iter().any(|(n, _)| n == "id") {
        return bad(
            "MANDATORY_FIELDS_NOT_MAPPED",
            "required key index for field id is not found in request body.",
            json!({"api_name": "id"}),
        );
    }
    let rows: Vec<Vec<String>> = reader
        .records()
        .filter_map(Result::ok)
        .map(|r| r.iter().map(str::to_string).collect())
        .collect();
    if rows.len() > MAX_ROWS {
        return bad(
            "LIMIT_EXCEEDED",
            "the file has more records than a bulk write job allows",
            json!({"limit": MAX_ROWS}),
        );
    }
    drop(store);
    let ignore_empty = body
        .get("ignore_empty")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let job_id = app.new_job_id();
    app.bulk.lock().unwrap().writes.insert(
        job_id.clone(),
        WriteJob {
            request: body.clone(),
            module: module.to_string(),
            file_name: file_name.clone(),
            state: State::Added,
            created_time: now_text(),
            counts: (0, 0, 0),
            result: None,
        },
    );
    let app2 = Arc::clone(app);
    let job = job_id.clone();
    let delay = app.job_delay();
    tokio::spawn(async move {
        tokio::time::sleep(delay / 2).await;
        set_write_state(&app2, &job, State::InProgress);
        tokio::time::sleep(delay / 2).await;
        run_write(&app2, &job, module, &header, &mappings, &rows, ignore_empty);
    });
    Answer::json(
        StatusCode::CREATED,
        json!({
            "status": "success",
            "code": "SUCCESS",
            "message": "success",
            "details": {"id": job_id, "created_by": creator()},
        }),
    )
}

fn set_write_state(app: &App, job: &str, state: State) {
    if let Some(j) = app.bulk.lock().unwrap().writes.get_mut(job) {
        j.state = state;
    }
}

fn run_write(
    app: &App,
    job: &str,
    module: &str,
    header: &[String],
    mappings: &[(String, usize)],
    rows: &[Vec<String>],
    ignore_empty: bool,
) {
    let mut out = csv::Writer::from_writer(Vec::new());
    let shown: Vec<&String> = header.iter().take(3).collect();
    let mut head: Vec<String> = shown.iter().map(|s| s.to_string()).collect();
    head.extend(["STATUS", "RECORD_ID", "ERRORS"].map(String::from));
    out.write_record(&head).expect("csv to memory");
    let (mut updated, mut skipped) = (0, 0);
    {
        let mut store = app.store.lock().unwrap();
        for row in rows {
            let mut item = Map::new();
            for (api_name, index) in mappings {
                let raw = row.get(*index).map(String::as_str).unwrap_or("");
                let kind = store.field(module, api_name).map(|f| f.kind);
                let value = if api_name == "id" {
                    Some(json!(raw))
                } else {
                    kind.and_then(|k| cell_value(k, raw, ignore_empty))
                };
                if let Some(v) = value {
                    item.insert(api_name.clone(), v);
                }
            }
            let result = store
                .update(module, &[Value::Object(item.clone())], None)
                .remove(0);
            let mut line: Vec<String> = (0..shown.len())
                .map(|i| row.get(i).cloned().unwrap_or_default())
                .collect();
            match result {
                Ok(w) => {
                    updated += 1;
                    line.extend(["updated".to_string(), w.id, String::new()]);
                }
                Err(e) => {
                    skipped += 1;
                    let (code, column) = error_column(&e);
                    let id = item
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    line.extend(["skipped".to_string(), id, format!("{code}-{column}")]);
                }
            }
            out.write_record(&line).expect("csv to memory");
        }
    }
    let csv_bytes = out.into_inner().expect("csv to memory");
    let mut bulk = app.bulk.lock().unwrap();
    if let Some(j) = bulk.writes.get_mut(job) {
        let name = format!("{}-{}", j.module, j.file_name);
        j.result = Some(zip_one(&name, &csv_bytes));
        j.counts = (0, skipped, updated);
        j.state = State::Completed;
    }
}

/// `GET /crm/bulk/v8/write/{id}`.
pub(crate) fn write_status(app: &Arc<App>, id: &str) -> Answer {
    let bulk = app.bulk.lock().unwrap();
    let Some(job) = bulk.writes.get(id) else {
        return bad(
            "RESOURCE_NOT_FOUND",
            "The requested resource doesn't exist.",
            json!({"resource": id}),
        );
    };
    let resource = job
        .request
        .pointer("/resource/0")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let (added, skipped, updated) = job.counts;
    let done = job.state == State::Completed;
    let mut body = json!({
        "status": job.state.as_str(),
        "character_encoding": "UTF-8",
        "resource": [{
            "status": job.state.as_str(),
            "type": "data",
            "module": {"api_name": job.module},
            "field_mappings": resource.get("field_mappings").cloned().unwrap_or(json!([])),
            "file": {
                "status": job.state.as_str(),
                "name": job.file_name,
                "added_count": added,
                "skipped_count": skipped,
                "updated_count": updated,
                "total_count": if done { added + skipped + updated } else { 0 },
            },
        }],
        "id": id,
        "created_by": creator(),
        "operation": "update",
        "created_time": job.created_time,
    });
    if let Some(cb) = job.request.get("callback") {
        body["callback"] = cb.clone();
    }
    if done {
        body["result"] =
            json!({"download_url": format!("{}/crm/bulk/v8/write/{id}/result", app.base_url)});
    }
    Answer::ok(body)
}

/// The zipped result CSV of a finished Bulk Write job.
pub(crate) fn write_result(app: &Arc<App>, id: &str) -> Answer {
    let bulk = app.bulk.lock().unwrap();
    match bulk.writes.get(id).and_then(|j| j.result.clone()) {
        Some(bytes) => file(format!("{id}.zip"), bytes),
        None => bad(
            "RESOURCE_NOT_FOUND",
            "The requested resource doesn't exist.",
            json!({"resource": id}),
        ),
    }
}

fn file(name: String, bytes: Vec<u8>) -> Answer {
    Answer {
        status: StatusCode::OK,
        body: Payload::File {
            content_type: "application/zip",
            name,
            bytes,
        },
        retry_after: None,
    }
}

/// Bulk Read criteria (`{field, comparator, value}` or `{group_operator, group}`) as a
/// condition.
fn criteria(c: &Value) -> Result<Cond, String> {
    if let Some(group) = c.get("group").and_then(Value::as_array) {
        let and = match c.get("group_operator").and_then(Value::as_str) {
            Some("and") | Some("AND") => true,
            Some("or") | Some("OR") => false,
            other => {
                return Err(format!(
                    "group operator `{}` is not supported",
                    other.unwrap_or("")
                ))
            }
        };
        let mut conds = group.iter().map(criteria);
        let first = conds.next().ok_or("an empty group")??;
        return conds.try_fold(first, |acc, next| {
            let next = next?;
            Ok(if and {
                Cond::And(Box::new(acc), Box::new(next))
            } else {
                Cond::Or(Box::new(acc), Box::new(next))
            })
        });
    }
    let field = c
        .pointer("/field/api_name")
        .or_else(|| c.get("api_name"))
        .and_then(Value::as_str)
        .ok_or("a criterion without a field")?
        .to_string();
    let comparator = c.get("comparator").and_then(Value::as_str).unwrap_or("");
    let value = c.get("value").cloned().unwrap_or(Value::Null);
    let lit = |v: &Value| match v {
        Value::String(s) => Literal::Str(s.clone()),
        Value::Number(n) => Literal::Num(n.to_string()),
        Value::Bool(b) => Literal::Bool(*b),
        _ => Literal::Null,
    };
    let text = || value.as_str().unwrap_or("").to_string();
    let list = || {
        value
            .as_array()
            .map(|a| a.iter().map(lit).collect())
            .unwrap_or_default()
    };
    Ok(match comparator {
        "equal" if value.is_null() => Cond::IsNull(field, false),
        "not_equal" if value.is_null() => Cond::IsNull(field, true),
        "equal" => Cond::Compare(field, Op::Eq, lit(&value)),
        "not_equal" => Cond::Compare(field, Op::Ne, lit(&value)),
        "greater_than" => Cond::Compare(field, Op::Gt, lit(&value)),
        "greater_equal" => Cond::Compare(field, Op::Ge, lit(&value)),
        "less_than" => Cond::Compare(field, Op::Lt, lit(&value)),
        "less_equal" => Cond::Compare(field, Op::Le, lit(&value)),
        "in" => Cond::In(field, list(), false),
        "not_in" => Cond::In(field, list(), true),
        "contains" => Cond::Like(field, format!("%{}%", text()), false),
        "not_contains" => Cond::Like(field, format!("%{}%", text()), true),
        "starts_with" => Cond::Like(field, format!("{}%", text()), false),
        "ends_with" => Cond::Like(field, format!("%{}", text()), false),
        "between" => {
            let items: Vec<Literal> = list();
            match items.as_slice() {
                [a, b] => Cond::Between(field, a.clone(), b.clone()),
                _ => return Err("between needs two values".into()),
            }
        }
        other => return Err(format!("comparator `{other}` is not supported")),
    })
}

/// `POST /crm/bulk/v8/read`.
pub(crate) fn create_read(app: &Arc<App>, body: Value) -> Answer {
    let Some(query) = body.get("query") else {
        return bad(
            "REQUEST_BODY_IS_EMPTY",
            "the query is missing",
            json!({"api_name": "query"}),
        );
    };
    let module_name = query
        .pointer("/module/api_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let store = app.store.lock().unwrap();
    let Ok(module) = store.module(module_name) else {
        return bad(
            "MODULE_NOT_AVAILABLE",
            &format!("Requested module '{module_name}' is not available."),
            json!({"api_name": "module"}),
        );
    };
    let mut fields: Vec<String> = query
        .get("fields")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if fields.is_empty() {
        fields = store
            .fields(module)
            .iter()
            .filter(|f| f.kind != Kind::Territories)
            .map(|f| f.api_name.to_string())
            .collect();
    }
    for f in &fields {
        match store.field(module, f) {
            None => {
                return bad(
                    "FIELD_NOT_AVAILABLE",
                    &format!("the field `{f}` is not available"),
                    json!({"api_name": f, "module": module}),
                )
            }
            Some(field) if field.kind == Kind::Territories => {
                return bad(
                    "FIELD_NOT_SUPPORTED",
                    "territory fields cannot be exported with bulk read",
                    json!({"api_name": f, "module": module}),
                )
            }
            Some(_) => {}
        }
    }
    let filter = match query.get("criteria") {
        None | Some(Value::Null) => None,
        Some(c) => match criteria(c) {
            Ok(cond) => {
                for column in cond.columns() {
                    if store.field(module, column).is_none() {
                        return bad(
                            "FIELD_IN_CRITERIA_NOT_AVAILABLE",
                            &format!("the field `{column}` in the criteria is not available"),
                            json!({"api_name": column, "module": module}),
                        );
                    }
                }
                Some(cond)
            }
            Err(reason) => return bad("INVALID_CRITERIA", &reason, json!({})),
        },
    };
    let page = match query.get("page_token").and_then(Value::as_str) {
        Some(token) => match token
            .strip_prefix("page-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) if n >= 1 => n,
            _ => {
                return bad(
                    "INVALID_REQUEST",
                    "the page token is not valid",
                    json!({"api_name": "page_token"}),
                )
            }
        },
        None => query
            .get("page")
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .max(1) as usize,
    };
    drop(store);
    let job_id = app.new_job_id();
    let created = now_text();
    app.bulk.lock().unwrap().reads.insert(
        job_id.clone(),
        ReadJob {
            query: query.clone(),
            state: State::Added,
            created_time: created.clone(),
            page,
            count: 0,
            more: false,
            result: None,
        },
    );
    let app2 = Arc::clone(app);
    let job = job_id.clone();
    let delay = app.job_delay();
    let module = module.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(delay / 2).await;
        if let Some(j) = app2.bulk.lock().unwrap().reads.get_mut(&job) {
            j.state = State::InProgress;
        }
        tokio::time::sleep(delay / 2).await;
        run_read(&app2, &job, &module, &fields, filter.as_ref(), page);
    });
    Answer::json(
        StatusCode::CREATED,
        json!({
            "data": [{
                "status": "success",
                "code": "ADDED_SUCCESSFULLY",
                "message": "Added successfully.",
                "details": {"id": job_id, "operation": "read", "state": "ADDED", "created_by": creator(), "created_time": created},
            }],
            "info": {},
        }),
    )
}

fn csv_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Object(o) => o.get("id").map(csv_cell).unwrap_or_default(),
        other => other.to_string(),
    }
}

fn run_read(
    app: &App,
    job: &str,
    module: &str,
    fields: &[String],
    filter: Option<&Cond>,
    page: usize,
) {
    let (records, more) =
        app.store
            .lock()
            .unwrap()
            .scan(module, filter, (page - 1) * READ_PAGE, READ_PAGE);
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut head = vec!["Id".to_string()];
    head.extend(fields.iter().filter(|f| *f != "id").cloned());
    out.write_record(&head).expect("csv to memory");
    for r in &records {
        let mut line = vec![csv_cell(&r["id"])];
        line.extend(
            fields
                .iter()
                .filter(|f| *f != "id")
                .map(|f| csv_cell(r.get(f).unwrap_or(&Value::Null))),
        );
        out.write_record(&line).expect("csv to memory");
    }
    let csv_bytes = out.into_inner().expect("csv to memory");
    let mut bulk = app.bulk.lock().unwrap();
    if let Some(j) = bulk.reads.get_mut(job) {
        j.result = Some(zip_one(&format!("{job}.csv"), &csv_bytes));
        j.count = records.len();
        j.more = more;
        j.state = State::Completed;
    }
}

/// `GET /crm/bulk/v8/read/{id}`.
pub(crate) fn read_status(app: &Arc<App>, id: &str) -> Answer {
    let bulk = app.bulk.lock().unwrap();
    let Some(job) = bulk.reads.get(id) else {
        return Answer::error(
            StatusCode::NOT_FOUND,
            "RESOURCE_NOT_FOUND",
            "The requested resource doesn't exist.",
            json!({"resource": id}),
        );
    };
    let mut detail = json!({
        "id": id,
        "operation": "read",
        "state": job.state.as_str(),
        "query": job.query,
        "created_by": creator(),
        "created_time": job.created_time,
        "file_type": "csv",
    });
    if job.state == State::Completed {
        detail["result"] = json!({
            "page": job.page,
            "per_page": READ_PAGE,
            "count": job.count,
            "download_url": format!("/crm/bulk/v8/read/{id}/result"),
            "more_records": job.more,
            "next_page_token": if job.more { json!(format!("page-{}", job.page + 1)) } else { Value::Null },
        });
    }
    Answer::ok(json!({ "data": [detail] }))
}

/// The zipped CSV of a finished Bulk Read job; at most 10 downloads a minute.
pub(crate) fn read_result(app: &Arc<App>, id: &str) -> Answer {
    let mut bulk = app.bulk.lock().unwrap();
    let now = Instant::now();
    if bulk.blocked_until.is_some_and(|t| t > now) {
        let wait = bulk.blocked_until.unwrap() - now;
        return too_many(wait);
    }
    while bulk
        .downloads
        .front()
        .is_some_and(|&t| now.duration_since(t) >= Duration::from_secs(60))
    {
        bulk.downloads.pop_front();
    }
    if bulk.downloads.len() >= DOWNLOADS_PER_MINUTE {
        let until = *bulk.downloads.front().expect("full window") + Duration::from_secs(60);
        bulk.blocked_until = Some(until);
        return too_many(until - now);
    }
    match bulk.reads.get(id).and_then(|j| j.result.clone()) {
        Some(bytes) => {
            bulk.downloads.push_back(now);
            file(format!("{id}.zip"), bytes)
        }
        None => bad(
            "RESOURCE_NOT_FOUND",
            "The requested resource doesn't exist.",
            json!({"resource": id}),
        ),
    }
}

fn too_many(wait: Duration) -> Answer {
    Answer {
        status: StatusCode::TOO_MANY_REQUESTS,
        body: Payload::Json(zoho_error(
            "TOO_MANY_REQUESTS",
            "too many bulk read downloads in a minute",
            json!({}),
        )),
        retry_after: Some(wait),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_file_part_is_found() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "multipart/form-data; boundary=XyZ".parse().unwrap(),
        );
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.zip\"\r\nContent-Type: application/zip\r\n\r\nPK\x03\x04data\r\n--XyZ--\r\n";
        assert_eq!(multipart_file(&headers, body).unwrap(), b"PK\x03\x04data");
    }

    #[test]
    fn zips_round_trip() {
        let z = zip_one("a.csv", b"id\n1\n");
        assert_eq!(
            unzip(&z).unwrap(),
            vec![("a.csv".to_string(), b"id\n1\n".to_vec())]
        );
    }

    #[test]
    fn criteria_become_conditions() {
        let c = criteria(&json!({"group_operator": "and", "group": [
            {"field": {"api_name": "Billing_Country"}, "comparator": "equal", "value": "France"},
            {"field": {"api_name": "Territory"}, "comparator": "equal", "value": null},
        ]}))
        .unwrap();
        assert_eq!(c.columns(), vec!["Billing_Country", "Territory"]);
        assert!(criteria(&json!({"field": {"api_name": "x"}, "comparator": "near"})).is_err());
    }
}
