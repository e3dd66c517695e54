//! The HTTP edge: routing, OAuth checks, the concurrency gates and credit ledger, injected
//! faults, and the translation of store results into Zoho's statuses, bodies and headers.
//!
//! One fallback handler routes every request itself so that each one passes the same
//! steps in the same order: count it, authenticate, take a gate slot, draw its fault,
//! charge its credits, run it, add the rate-limit headers.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

use super::auth::{Auth, Credentials, GrantError, TokenError};
use super::bulk::{self, Bulk};
use super::coql::{self, CoqlError};
use super::faults::{Fault, FaultPlan, Faults};
use super::limits::{self, Gates, Ledger, Refusal};
use super::seed;
use super::state_file;
use super::store::{ListQuery, PendingChange, SortBy, Store, StoreError, Written};
use super::{
    Edition, HeaderProfile, SandboxConfig, SandboxError, Stats, CLIENT_ID, CLIENT_SECRET,
    REFRESH_TOKEN,
};
use crate::edition::SUB_CONCURRENCY;

const MAX_BODY: usize = 64 << 20;
const MAX_FIELDS: usize = 50;
const MAX_PER_PAGE: usize = 200;
const DISCRETE_LIMIT: usize = 2000;
const TOKEN_LIMIT: usize = 100_000;
const MAX_IDS: usize = 100;
const MAX_UPDATE: usize = 100;
const MAX_TERRITORY_RECORDS: usize = 10;
const SCOPE: &str = "ZohoCRM.modules.ALL ZohoCRM.settings.ALL ZohoCRM.coql.READ ZohoCRM.bulk.ALL ZohoCRM.org.READ ZohoFiles.files.ALL";

/// Run-time switches set with `POST /__sandbox/config`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Switches {
    pub schedule_territory_jobs: bool,
    pub job_delay_ms: u64,
}

/// The sandbox's shared state.
pub struct App {
    pub base_url: String,
    edition: Edition,
    headers: HeaderProfile,
    state_file: Option<PathBuf>,
    page_token_ttl: Duration,
    daily_credits: u64,
    pub(crate) store: Mutex<Store>,
    auth: Mutex<Auth>,
    gates: Arc<Gates>,
    ledger: Mutex<Ledger>,
    faults: Mutex<FaultPlan>,
    stats: Mutex<Stats>,
    switches: Mutex<Switches>,
    pub(crate) bulk: Mutex<Bulk>,
    retry_after_turn: AtomicU64,
    next_job: AtomicU64,
    page_secret: [u8; 16],
    closing: watch::Sender<bool>,
    flushed: Mutex<u64>,
}

/// One answer before headers are added.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Payload,
    pub(crate) retry_after: Option<Duration>,
}

pub(crate) enum Payload {
    Json(Value),
    Empty,
    File {
        content_type: &'static str,
        name: String,
        bytes: Vec<u8>,
    },
    Text(&'static str),
}

impl Answer {
    pub(crate) fn json(status: StatusCode, body: Value) -> Answer {
        Answer {
            status,
            body: Payload::Json(body),
            retry_after: None,
        }
    }

    pub(crate) fn ok(body: Value) -> Answer {
        Answer::json(StatusCode::OK, body)
    }

    pub(crate) fn empty(status: StatusCode) -> Answer {
        Answer {
            status,
            body: Payload::Empty,
            retry_after: None,
        }
    }

    pub(crate) fn error(status: StatusCode, code: &str, message: &str, details: Value) -> Answer {
        Answer::json(status, zoho_error(code, message, details))
    }

    pub(crate) fn bad(code: &str, message: &str, details: Value) -> Answer {
        Answer::error(StatusCode::BAD_REQUEST, code, message, details)
    }

    pub(crate) fn not_found() -> Answer {
        Answer::error(
            StatusCode::NOT_FOUND,
            "INVALID_URL_PATTERN",
            "Please check if the URL trying to access is a correct one",
            json!({}),
        )
    }
}

pub(crate) fn zoho_error(code: &str, message: &str, details: Value) -> Value {
    json!({"code": code, "details": details, "message": message, "status": "error"})
}

/// What a request is, after routing.
#[derive(Debug, Clone, PartialEq)]
enum Route {
    Token,
    Org,
    Territories,
    Territory(String),
    ChildTerritories(String),
    Coql,
    ListRecords(String),
    GetRecord(String, String),
    UpdateRecords(String),
    UpdateRecord(String, String),
    TerritoryAction {
        module: String,
        id: Option<String>,
        remove: bool,
    },
    Upload,
    BulkWriteCreate,
    BulkWriteStatus(String),
    BulkWriteResult(String),
    BulkReadCreate,
    BulkReadStatus(String),
    BulkReadResult(String),
    WrongMethod,
    Unknown,
}

fn canonical_module(name: &str) -> String {
    super::store::MODULES
        .iter()
        .find(|m| m.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_string(), |m| m.to_string())
}

impl Route {
    fn parse(method: &Method, path: &str) -> Route {
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let get = *method == Method::GET;
        let post = *method == Method::POST;
        let put = *method == Method::PUT;
        let route = match segs.as_slice() {
            ["oauth", "v2", "token"] => post.then_some(Route::Token),
            ["crm", "v8", "org"] => get.then_some(Route::Org),
            ["crm", "v8", "settings", "territories"] => get.then_some(Route::Territories),
            ["crm", "v8", "settings", "territories", id] => {
                get.then(|| Route::Territory(id.to_string()))
            }
            ["crm", "v8", "settings", "territories", id, "__child_territories"] => {
                get.then(|| Route::ChildTerritories(id.to_string()))
            }
            ["crm", "v8", "coql"] => post.then_some(Route::Coql),
            ["crm", "v8", "upload"] => post.then_some(Route::Upload),
            ["crm", "bulk", "v8", "write"] => post.then_some(Route::BulkWriteCreate),
            ["crm", "bulk", "v8", "write", id] => {
                get.then(|| Route::BulkWriteStatus(id.to_string()))
            }
            ["crm", "bulk", "v8", "write", id, "result"] => {
                get.then(|| Route::BulkWriteResult(id.to_string()))
            }
            ["crm", "bulk", "v8", "read"] => post.then_some(Route::BulkReadCreate),
            ["crm", "bulk", "v8", "read", id] => get.then(|| Route::BulkReadStatus(id.to_string())),
            ["crm", "bulk", "v8", "read", id, "result"] => {
                get.then(|| Route::BulkReadResult(id.to_string()))
            }
            ["crm", "v8", "settings", ..] => return Route::Unknown,
            ["crm", "v8", module, "actions", action] if post => match *action {
                "assign_territories" | "remove_territories" => Some(Route::TerritoryAction {
                    module: canonical_module(module),
                    id: None,
                    remove: *action == "remove_territories",
                }),
                _ => return Route::Unknown,
            },
            ["crm", "v8", module, id, "actions", action] if post => match *action {
                "assign_territories" | "remove_territories" => Some(Route::TerritoryAction {
                    module: canonical_module(module),
                    id: Some(id.to_string()),
                    remove: *action == "remove_territories",
                }),
                _ => return Route::Unknown,
            },
            ["crm", "v8", module] if get => Some(Route::ListRecords(canonical_module(module))),
            ["crm", "v8", module] if put => Some(Route::UpdateRecords(canonical_module(module))),
            ["crm", "v8", module, id] if get => {
                Some(Route::GetRecord(canonical_module(module), id.to_string()))
            }
            ["crm", "v8", module, id] if put => Some(Route::UpdateRecord(
                canonical_module(module),
                id.to_string(),
            )),
            ["crm", "v8", _] | ["crm", "v8", _, _] => Some(Route::WrongMethod),
            _ => None,
        };
        match route {
            Some(r) => r,
            None if segs.len() >= 3 && segs[..2] == ["crm", "v8"]
                || segs.first() == Some(&"oauth") =>
            {
                Route::WrongMethod
            }
            None => Route::Unknown,
        }
    }

    /// The stats key: method and path with ids replaced by `{id}`.
    fn key(&self, method: &Method, path: &str) -> String {
        let p = match self {
            Route::Token => "/oauth/v2/token".to_string(),
            Route::Org => "/crm/v8/org".to_string(),
            Route::Territories => "/crm/v8/settings/territories".to_string(),
            Route::Territory(_) => "/crm/v8/settings/territories/{id}".to_string(),
            Route::ChildTerritories(_) => {
                "/crm/v8/settings/territories/{id}/__child_territories".to_string()
            }
            Route::Coql => "/crm/v8/coql".to_string(),
            Route::ListRecords(m) | Route::UpdateRecords(m) => format!("/crm/v8/{m}"),
            Route::GetRecord(m, _) | Route::UpdateRecord(m, _) => format!("/crm/v8/{m}/{{id}}"),
            Route::TerritoryAction { module, id, remove } => {
                let action = if *remove {
                    "remove_territories"
                } else {
                    "assign_territories"
                };
                match id {
                    Some(_) => format!("/crm/v8/{module}/{{id}}/actions/{action}"),
                    None => format!("/crm/v8/{module}/actions/{action}"),
                }
            }
            Route::Upload => "/crm/v8/upload".to_string(),
            Route::BulkWriteCreate => "/crm/bulk/v8/write".to_string(),
            Route::BulkWriteStatus(_) => "/crm/bulk/v8/write/{id}".to_string(),
            Route::BulkWriteResult(_) => "/crm/bulk/v8/write/{id}/result".to_string(),
            Route::BulkReadCreate => "/crm/bulk/v8/read".to_string(),
            Route::BulkReadStatus(_) => "/crm/bulk/v8/read/{id}".to_string(),
            Route::BulkReadResult(_) => "/crm/bulk/v8/read/{id}/result".to_string(),
            Route::WrongMethod | Route::Unknown => path.to_string(),
        };
        format!("{method} {p}")
    }
}

/// A request's query string as pairs (repeated keys keep the last value).
type Query = HashMap<String, String>;

fn parse_query(q: Option<&str>) -> Query {
    q.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

impl App {
    pub fn new(
        config: SandboxConfig,
        listener: &tokio::net::TcpListener,
    ) -> Result<Arc<App>, SandboxError> {
        let addr = listener.local_addr().map_err(SandboxError::Serve)?;
        config
            .faults
            .validate()
            .map_err(|reason| SandboxError::FaultsFile {
                path: PathBuf::from("<config>"),
                reason,
            })?;
        let spec = config.seed_spec();
        let store = match &config.state_file {
            Some(path) => state_file::load_or_seed(path, spec)?,
            None => Store::new(spec),
        };
        let version = store.version;
        let daily = config
            .daily_credits
            .unwrap_or_else(|| config.edition.base_daily_credits());
        let now = Instant::now();
        let mut page_secret = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut page_secret);
        Ok(Arc::new(App {
            base_url: format!("http://{addr}"),
            edition: config.edition,
            headers: config.headers,
            state_file: config.state_file.clone(),
            page_token_ttl: config.page_token_ttl,
            daily_credits: daily,
            store: Mutex::new(store),
            auth: Mutex::new(Auth::new(
                Credentials {
                    client_id: CLIENT_ID.into(),
                    client_secret: CLIENT_SECRET.into(),
                    refresh_token: REFRESH_TOKEN.into(),
                },
                config.token_ttl,
                config.tokens_per_window,
            )),
            gates: Arc::new(Gates::default()),
            ledger: Mutex::new(Ledger::new(daily, now)),
            faults: Mutex::new(FaultPlan::new(config.faults.clone())),
            stats: Mutex::new(Stats::default()),
            switches: Mutex::new(Switches {
                schedule_territory_jobs: config.schedule_territory_jobs,
                job_delay_ms: config.job_delay.as_millis() as u64,
            }),
            bulk: Mutex::new(Bulk::default()),
            retry_after_turn: AtomicU64::new(0),
            next_job: AtomicU64::new(1),
            page_secret,
            closing: watch::channel(false).0,
            flushed: Mutex::new(version),
        }))
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.lock().unwrap().clone();
        s.max_in_flight = self.gates.max_in_flight() as u64;
        s
    }

    pub(crate) fn job_delay(&self) -> Duration {
        Duration::from_millis(self.switches.lock().unwrap().job_delay_ms)
    }

    pub(crate) fn new_job_id(&self) -> String {
        (5_725_767_000_000_900_001 + self.next_job.fetch_add(1, Ordering::Relaxed)).to_string()
    }

    /// Writes the state file if the org changed since the last write.
    pub(crate) fn flush(&self) -> Result<(), SandboxError> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let mut flushed = self.flushed.lock().unwrap();
        let (version, snapshot) = {
            let store = self.store.lock().unwrap();
            if store.version == *flushed {
                return Ok(());
            }
            (store.version, store.snapshot())
        };
        state_file::write(path, &snapshot)?;
        *flushed = version;
        Ok(())
    }

    fn count(&self, key: &str) {
        let mut s = self.stats.lock().unwrap();
        s.requests += 1;
        *s.by_endpoint.entry(key.to_string()).or_default() += 1;
    }

    fn count_status(&self, status: &str, throttled: bool) {
        let mut s = self.stats.lock().unwrap();
        *s.by_status.entry(status.to_string()).or_default() += 1;
        if throttled {
            s.throttled += 1;
        }
    }

    fn count_credits(&self, key: &str, credits: u64) {
        if credits == 0 {
            return;
        }
        let mut s = self.stats.lock().unwrap();
        s.credits_used += credits;
        *s.credits_by_endpoint.entry(key.to_string()).or_default() += credits;
    }

    fn too_many(&self, wait: Duration) -> Answer {
        let mut a = Answer::error(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            "too many requests",
            json!({}),
        );
        a.retry_after = Some(wait);
        a
    }

    fn refusal(&self, refusal: Refusal) -> Answer {
        match refusal {
            Refusal::Concurrency | Refusal::SubConcurrency => self.too_many(Duration::from_secs(1)),
            Refusal::Credits(wait) => self.too_many(wait),
        }
    }

    async fn stall(&self, how_long: Duration) {
        let mut closing = self.closing.subscribe();
        if *closing.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(how_long) => {}
            _ = closing.changed() => {}
        }
    }

    /// Runs one API request through every step; returns the answer and whether to
    /// drop the connection mid-body.
    async fn handle(
        self: &Arc<Self>,
        route: &Route,
        key: &str,
        headers: &HeaderMap,
        query: &Query,
        body: &Bytes,
    ) -> (Answer, bool) {
        match route {
            Route::Token => return (self.token(query, body), false),
            Route::Unknown => return (Answer::not_found(), false),
            Route::WrongMethod => {
                return (
                    Answer::bad(
                        "INVALID_REQUEST_METHOD",
                        "The http request method type is not a valid one",
                        json!({}),
                    ),
                    false,
                )
            }
            _ => {}
        }
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let checked = self
            .auth
            .lock()
            .unwrap()
            .check(authorization, Instant::now());
        match checked {
            Ok(()) => {}
            Err(TokenError::Missing) => {
                return (
                    Answer::error(
                        StatusCode::UNAUTHORIZED,
                        "AUTHENTICATION_FAILURE",
                        "Authentication failed",
                        json!({}),
                    ),
                    false,
                )
            }
            Err(TokenError::Invalid) => {
                return (
                    Answer::error(
                        StatusCode::UNAUTHORIZED,
                        "INVALID_TOKEN",
                        "invalid oauth token",
                        json!({}),
                    ),
                    false,
                )
            }
        }

        let json_body: Option<Result<Value, String>> = match route {
            Route::UpdateRecords(_)
            | Route::UpdateRecord(..)
            | Route::Coql
            | Route::TerritoryAction { .. }
            | Route::BulkWriteCreate
            | Route::BulkReadCreate => {
                Some(serde_json::from_slice(body).map_err(|e| e.to_string()))
            }
            _ => None,
        };
        let parsed_coql = match (route, &json_body) {
            (Route::Coql, Some(Ok(v))) => v
                .get("select_query")
                .and_then(Value::as_str)
                .map(coql::parse),
            _ => None,
        };
        let records = json_body
            .as_ref()
            .and_then(|b| b.as_ref().ok())
            .and_then(|b| b.get("data"))
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let (heavy, cost) = match route {
            Route::Coql => (
                true,
                match &parsed_coql {
                    Some(Ok(q)) => limits::coql_cost(q.limit),
                    _ => 1,
                },
            ),
            Route::UpdateRecords(_) | Route::UpdateRecord(..) => {
                (records > 10, limits::write_cost(records))
            }
            Route::ListRecords(_) => (
                query.contains_key("sort_by") || query.contains_key("cvid"),
                if query.contains_key("cvid") { 3 } else { 1 },
            ),
            Route::BulkReadCreate => (true, 50),
            Route::BulkWriteCreate => (true, 500),
            _ => (false, 1),
        };

        let (capacity, neighbour_credits, plan) = {
            let mut faults = self.faults.lock().unwrap();
            let capacity = self
                .edition
                .concurrency()
                .saturating_sub(faults.faults.neighbour_concurrency);
            let plan = faults.draw();
            (capacity, faults.faults.neighbour_credits_per_min, plan)
        };
        let _slot = match self.gates.enter(heavy, capacity, SUB_CONCURRENCY) {
            Ok(slot) => slot,
            Err(refusal) => return (self.refusal(refusal), false),
        };
        let (delay, fault) = plan;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match fault {
            Fault::Throttle => return (self.too_many(Duration::from_secs(2)), false),
            Fault::ServerError(500) => {
                return (
                    Answer::error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "INTERNAL_ERROR",
                        "Internal server error occurred.",
                        json!({}),
                    ),
                    false,
                )
            }
            Fault::ServerError(status) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                let text = match status.as_u16() {
                    502 => "<html><body><h1>502 Bad Gateway</h1></body></html>",
                    503 => "<html><body><h1>503 Service Unavailable</h1></body></html>",
                    _ => "<html><body><h1>504 Gateway Time-out</h1></body></html>",
                };
                return (
                    Answer {
                        status,
                        body: Payload::Text(text),
                        retry_after: None,
                    },
                    false,
                );
            }
            Fault::Stall => {
                let stall = self.faults.lock().unwrap().faults.stall();
                self.stall(stall).await;
            }
            Fault::Reset | Fault::None => {}
        }
        {
            let now = Instant::now();
            let mut ledger = self.ledger.lock().unwrap();
            ledger.accrue_neighbour(neighbour_credits, now);
            if let Err(refusal) = ledger.charge(cost, now) {
                return (self.refusal(refusal), false);
            }
        }
        self.count_credits(key, cost);
        let answer = self.run_route(route, headers, query, body, json_body, parsed_coql);
        (answer, fault == Fault::Reset)
    }

    fn run_route(
        self: &Arc<Self>,
        route: &Route,
        headers: &HeaderMap,
        query: &Query,
        body: &Bytes,
        json_body: Option<Result<Value, String>>,
        parsed_coql: Option<Result<coql::Query, CoqlError>>,
    ) -> Answer {
        let body_json = match json_body {
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => {
                return Answer::bad(
                    "INVALID_DATA",
                    "body",
                    json!({"expected_data_type": "jsonobject"}),
                )
            }
            None => None,
        };
        match route {
            Route::Org => self.org(),
            Route::Territories => self.territories(query, None),
            Route::Territory(id) => self.territories(query, Some((id, false))),
            Route::ChildTerritories(id) => self.territories(query, Some((id, true))),
            Route::Coql => coql_answer(&self.store.lock().unwrap(), parsed_coql),
            Route::ListRecords(m) => self.list(m, headers, query),
            Route::GetRecord(m, id) => self.get_record(m, id, query),
            Route::UpdateRecords(m) => self.update(m, None, headers, body_json.unwrap_or_default()),
            Route::UpdateRecord(m, id) => {
                self.update(m, Some(id), headers, body_json.unwrap_or_default())
            }
            Route::TerritoryAction { module, id, remove } => self.territory_action(
                module,
                id.as_deref(),
                *remove,
                body_json.unwrap_or_default(),
            ),
            Route::Upload => bulk::upload(self, headers, body),
            Route::BulkWriteCreate => bulk::create_write(self, body_json.unwrap_or_default()),
            Route::BulkWriteStatus(id) => bulk::write_status(self, id),
            Route::BulkWriteResult(id) => bulk::write_result(self, id),
            Route::BulkReadCreate => bulk::create_read(self, body_json.unwrap_or_default()),
            Route::BulkReadStatus(id) => bulk::read_status(self, id),
            Route::BulkReadResult(id) => bulk::read_result(self, id),
            Route::Token | Route::WrongMethod | Route::Unknown => {
                unreachable!("answered before the gate")
            }
        }
    }

    fn token(&self, query: &Query, body: &Bytes) -> Answer {
        let mut params = query.clone();
        params.extend(url::form_urlencoded::parse(body).into_owned());
        let granted = self.auth.lock().unwrap().grant(&params, Instant::now());
        match granted {
            Ok(token) => {
                let ttl = self.auth.lock().unwrap().ttl();
                Answer::ok(json!({
                    "access_token": token,
                    "scope": SCOPE,
                    "api_domain": self.base_url,
                    "token_type": "Bearer",
                    "expires_in": ttl.as_secs().max(1),
                }))
            }
            Err(GrantError::TooMany) => Answer::ok(json!({
                "error": "Access Denied",
                "error_description": "You have made too many requests continuously. Please try again after some time.",
            })),
            Err(GrantError::InvalidClient) => Answer::ok(json!({"error": "invalid_client"})),
            Err(GrantError::InvalidCode) => Answer::ok(json!({"error": "invalid_code"})),
            Err(GrantError::UnsupportedGrant) => {
                Answer::ok(json!({"error": "unsupported_grant_type"}))
            }
        }
    }

    fn org(&self) -> Answer {
        Answer::ok(json!({"org": [{
            "id": (seed::USER_BASE - 1).to_string(),
            "company_name": seed::ORG_NAME,
            "zgid": seed::ORG_ID,
            "domain_name": format!("org{}", seed::ORG_ID),
            "primary_email": seed::USERS[0].1,
            "country_code": "US",
            "time_zone": "UTC",
            "currency": "US Dollar",
            "iso_code": "USD",
            "type": "production",
            "license_details": {"paid": true, "paid_type": self.edition.as_str(), "users_license_purchased": 10},
        }]}))
    }

    fn territories(&self, query: &Query, one: Option<(&String, bool)>) -> Answer {
        let store = self.store.lock().unwrap();
        let per_page = match parse_count(query.get("per_page"), 2000) {
            Some(n) if (1..=2000).contains(&n) => n,
            _ => return invalid_param("per_page"),
        };
        let page = match parse_count(query.get("page"), 1) {
            Some(n) if n >= 1 => n,
            _ => return invalid_param("page"),
        };
        let ids: Option<Vec<u64>> = match query.get("ids") {
            None => None,
            Some(raw) => {
                let parsed: Option<Vec<u64>> =
                    raw.split(',').map(|s| s.trim().parse().ok()).collect();
                match parsed {
                    Some(v) if !v.is_empty() && v.len() <= 100 => Some(v),
                    _ => return invalid_param("ids"),
                }
            }
        };
        let mut list: Vec<&super::store::Territory> = store.territories().iter().collect();
        if let Some((id, children)) = one {
            let Ok(id) = id.parse::<u64>() else {
                return Answer::bad(
                    "INVALID_URL_PATTERN",
                    "Please check if the URL trying to access is a correct one",
                    json!({}),
                );
            };
            if store.territory(id).is_none() {
                return Answer::empty(StatusCode::NO_CONTENT);
            }
            if children {
                list.retain(|t| t.parent == Some(id));
            } else {
                list.retain(|t| t.id == id);
            }
        }
        if let Some(ids) = &ids {
            list.retain(|t| ids.contains(&t.id));
        }
        let start = (page - 1) * per_page;
        let more = list.len() > start + per_page;
        let items: Vec<Value> = list
            .iter()
            .skip(start)
            .take(per_page)
            .map(|t| {
                let n = (t.id - seed::TERRITORY_BASE) as usize;
                let created = seed::format_time(1_672_531_200 + n as i64 * 3_607);
                let reporting_to = t.parent.and_then(|p| store.territory(p)).map(|p| {
                    json!({"name": p.name, "id": p.id.to_string()})
                });
                let manager = seed::user(1 + n % (seed::USERS.len() - 1));
                json!({
                    "created_time": created,
                    "modified_time": created,
                    "manager": {"name": manager["name"], "id": manager["id"]},
                    "reporting_to": reporting_to,
                    "permission_type": "read_write_delete",
                    "modified_by": {"name": seed::USERS[0].0, "id": seed::USER_BASE.to_string()},
                    "description": if t.description.is_empty() { Value::Null } else { json!(t.description) },
                    "id": t.id.to_string(),
                    "created_by": {"name": seed::USERS[0].0, "id": seed::USER_BASE.to_string()},
                    "account_rule_criteria": null,
                    "deal_rule_criteria": null,
                    "lead_rule_criteria": null,
                    "name": t.name,
                    "api_name": api_name(t.name),
                })
            })
            .collect();
        if items.is_empty() {
            return Answer::empty(StatusCode::NO_CONTENT);
        }
        Answer::ok(json!({
            "territories": items,
            "info": {"per_page": per_page, "count": items.len(), "page": page, "more_records": more},
        }))
    }

    fn page_token(&self, offset: usize, bind: u64, issued: i64) -> String {
        let payload = format!("{offset:012x}{issued:012x}{bind:016x}");
        let mac = Sha256::new()
            .chain_update(self.page_secret)
            .chain_update(payload.as_bytes())
            .finalize();
        let mac: String = mac[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{payload}{mac}")
    }

    fn read_page_token(&self, token: &str) -> Option<(usize, i64, u64)> {
        if token.len() != 56 || !token.is_ascii() {
            return None;
        }
        let (payload, mac) = token.split_at(40);
        let offset = usize::from_str_radix(&payload[..12], 16).ok()?;
        let issued = i64::from_str_radix(&payload[12..24], 16).ok()?;
        let bind = u64::from_str_radix(&payload[24..40], 16).ok()?;
        (self.page_token(offset, bind, issued)[40..] == *mac).then_some((offset, issued, bind))
    }

    fn list(&self, module: &str, headers: &HeaderMap, query: &Query) -> Answer {
        let store = self.store.lock().unwrap();
        if store.module(module).is_err() {
            return invalid_module();
        }
        let Some(fields) = query.get("fields").filter(|f| !f.trim().is_empty()) else {
            return Answer::bad(
                "REQUIRED_PARAM_MISSING",
                "One of the expected parameter is missing",
                json!({"param_name": "fields"}),
            );
        };
        let fields: Vec<String> = fields
            .split(',')
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect();
        if fields.len() > MAX_FIELDS {
            return Answer::bad(
                "LIMIT_EXCEEDED",
                "Max field limit exceeded",
                json!({"param_name": "fields", "limit": MAX_FIELDS}),
            );
        }
        let per_page = match parse_count(query.get("per_page"), MAX_PER_PAGE) {
            Some(n) if (1..=MAX_PER_PAGE).contains(&n) => n,
            _ => return invalid_param("per_page"),
        };
        if query.contains_key("page") && query.contains_key("page_token") {
            return ambiguity(&["page", "page_token"]);
        }
        if query.contains_key("cvid") && query.contains_key("sort_by") {
            return ambiguity(&["cvid", "sort_by"]);
        }
        if query.contains_key("cvid") {
            return invalid_param("cvid");
        }
        let sort_by = match query.get("sort_by").map(String::as_str) {
            None | Some("id") => SortBy::Id,
            Some("Created_Time") => SortBy::CreatedTime,
            Some("Modified_Time") => SortBy::ModifiedTime,
            Some(_) => {
                return Answer::bad(
                    "INVALID_DATA",
                    "invalid data",
                    json!({"param_name": "sort_by", "supported_values": ["id", "Created_Time", "Modified_Time"]}),
                )
            }
        };
        let ascending = match query.get("sort_order").map(String::as_str) {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(_) => return invalid_param("sort_order"),
        };
        let ids = match query.get("ids") {
            None => None,
            Some(raw) => {
                let parsed: Option<Vec<u64>> = raw
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().parse().ok())
                    .collect();
                match parsed {
                    Some(v) if v.len() > MAX_IDS => {
                        return Answer::bad(
                            "LIMIT_EXCEEDED",
                            "Record count exceeded",
                            json!({"param_name": "ids", "limit": MAX_IDS}),
                        )
                    }
                    Some(v) if !v.is_empty() => Some(v),
                    _ => return invalid_param("ids"),
                }
            }
        };
        let include_child = match query.get("include_child").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return invalid_param("include_child"),
        };
        let territory = match query.get("territory_id") {
            None => None,
            Some(raw) => match raw
                .parse::<u64>()
                .ok()
                .filter(|id| store.territory(*id).is_some())
            {
                Some(id) => Some((id, include_child)),
                None => return invalid_param("territory_id"),
            },
        };
        let modified_since = match headers.get(header::IF_MODIFIED_SINCE) {
            None => None,
            Some(v) => match v.to_str().ok().and_then(parse_header_time) {
                Some(t) => Some(t),
                None => return invalid_param("If-Modified-Since"),
            },
        };
        let bind = {
            let mut h = Sha256::new();
            for k in [
                "fields",
                "per_page",
                "sort_by",
                "sort_order",
                "ids",
                "territory_id",
                "include_child",
            ] {
                h.update(k.as_bytes());
                h.update([0]);
                h.update(query.get(k).map_or("", String::as_str).as_bytes());
                h.update([0]);
            }
            h.update(module.as_bytes());
            let d = h.finalize();
            u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
        };
        let now = chrono::Utc::now().timestamp();
        let (offset, limit, token_mode) = if let Some(token) = query.get("page_token") {
            let Some((offset, issued, token_bind)) = self.read_page_token(token) else {
                return Answer::bad(
                    "INVALID_DATA",
                    "invalid data",
                    json!({"param_name": "page_token"}),
                );
            };
            if now - issued > self.page_token_ttl.as_secs() as i64 {
                return Answer::bad(
                    "EXPIRED_VALUE",
                    "the page token has expired",
                    json!({"api_name": "page_token", "json_path": "$.query.page_token"}),
                );
            }
            if token_bind != bind {
                return Answer::bad(
                    "TOKEN_BOUND_DATA_MISMATCH",
                    "the parameters differ from the ones the page token was issued for",
                    json!({"param_name": "page_token"}),
                );
            }
            if offset >= TOKEN_LIMIT {
                return Answer::bad(
                    "PAGINATION_LIMIT_EXCEEDED",
                    "no more records can be fetched with page_token",
                    json!({"param_name": "page_token", "limit": TOKEN_LIMIT}),
                );
            }
            (offset, per_page.min(TOKEN_LIMIT - offset), true)
        } else {
            let page = match parse_count(query.get("page"), 1) {
                Some(n) if n >= 1 => n,
                _ => return invalid_param("page"),
            };
            let offset = (page - 1).saturating_mul(per_page);
            if offset >= DISCRETE_LIMIT {
                return Answer::bad(
                    "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                    "the page parameter can only reach the first 2000 records; use page_token",
                    json!({"limit": DISCRETE_LIMIT}),
                );
            }
            (offset, per_page.min(DISCRETE_LIMIT - offset), false)
        };
        let q = ListQuery {
            fields,
            ids,
            sort_by,
            ascending,
            territory,
            offset,
            limit,
            modified_since,
        };
        let (records, more) = match store.list(module, &q) {
            Ok(page) => page,
            Err(e) => return store_error(&e, None),
        };
        if records.is_empty() {
            return Answer::empty(if modified_since.is_some() {
                StatusCode::NOT_MODIFIED
            } else {
                StatusCode::NO_CONTENT
            });
        }
        // A token past the 100,000th record is still issued; using it is what Zoho refuses.
        let next = more.then(|| self.page_token(offset + records.len(), bind, now));
        let previous = (token_mode && offset > 0)
            .then(|| self.page_token(offset.saturating_sub(per_page), bind, now));
        let expiry = next
            .as_ref()
            .map(|_| seed::format_time(now + self.page_token_ttl.as_secs() as i64));
        Answer::ok(json!({
            "data": records,
            "info": {
                "per_page": per_page,
                "next_page_token": next,
                "count": records.len(),
                "sort_by": match sort_by { SortBy::Id => "id", SortBy::CreatedTime => "Created_Time", SortBy::ModifiedTime => "Modified_Time" },
                "page": offset / per_page + 1,
                "previous_page_token": previous,
                "page_token_expiry": expiry,
                "sort_order": if ascending { "asc" } else { "desc" },
                "email": false,
                "call": false,
                "more_records": more,
            }
        }))
    }

    fn get_record(&self, module: &str, id: &str, query: &Query) -> Answer {
        let store = self.store.lock().unwrap();
        if store.module(module).is_err() {
            return invalid_module();
        }
        let Ok(id) = id.parse::<u64>() else {
            return Answer::bad(
                "INVALID_DATA",
                "the id given seems to be invalid",
                json!({"resource_path_index": 1}),
            );
        };
        let Some(mut record) = store.get(module, id) else {
            return Answer::empty(StatusCode::NO_CONTENT);
        };
        if let Some(fields) = query.get("fields") {
            let wanted: HashSet<&str> = fields.split(',').map(str::trim).collect();
            record.retain(|k, _| k == "id" || wanted.contains(k.as_str()));
        }
        Answer::ok(json!({"data": [record]}))
    }

    fn update(
        &self,
        module: &str,
        url_id: Option<&str>,
        headers: &HeaderMap,
        body: Value,
    ) -> Answer {
        let mut store = self.store.lock().unwrap();
        if store.module(module).is_err() {
            return invalid_module();
        }
        let since = match headers.get(header::IF_UNMODIFIED_SINCE) {
            None => None,
            Some(v) => match v.to_str().ok().and_then(parse_header_time) {
                Some(t) => Some(t),
                None => return invalid_param("If-Unmodified-Since"),
            },
        };
        if let Some(trigger) = body.get("trigger") {
            let allowed = [
                "approval",
                "workflow",
                "blueprint",
                "pathfinder",
                "orchestration",
            ];
            let ok = trigger.as_array().is_some_and(|t| {
                t.iter()
                    .all(|v| v.as_str().is_some_and(|s| allowed.contains(&s)))
            });
            if !ok {
                return Answer::bad(
                    "INVALID_DATA",
                    "invalid data",
                    json!({"api_name": "trigger", "json_path": "$.trigger", "supported_values": allowed}),
                );
            }
        }
        let max = if url_id.is_some() { 1 } else { MAX_UPDATE };
        let items = match data_items(&body, max) {
            Ok(items) => items,
            Err(answer) => return answer,
        };
        let mut items = items.clone();
        if let Some(id) = url_id {
            if id.parse::<u64>().is_err() {
                return Answer::bad(
                    "INVALID_DATA",
                    "the id given seems to be invalid",
                    json!({"resource_path_index": 1}),
                );
            }
            if let Some(obj) = items[0].as_object_mut() {
                match obj.get("id") {
                    Some(given) if given.as_str() != Some(id) => {
                        return Answer::bad(
                            "INVALID_DATA",
                            "the id given seems to be invalid",
                            json!({"api_name": "id", "json_path": "$.data[0].id"}),
                        )
                    }
                    _ => {
                        obj.insert("id".into(), json!(id));
                    }
                }
            }
        }
        let results = store.update(module, &items, since);
        drop(store);
        write_results(results, |w| {
            json!({
                "code": "SUCCESS",
                "details": {
                    "Modified_Time": w.modified_time,
                    "Modified_By": {"name": w.modified_by["name"], "id": w.modified_by["id"]},
                    "Created_Time": w.created_time,
                    "id": w.id,
                    "Created_By": {"name": w.created_by["name"], "id": w.created_by["id"]},
                },
                "message": "record updated",
                "status": "success",
            })
        })
    }

    fn territory_action(
        self: &Arc<Self>,
        module: &str,
        url_id: Option<&str>,
        remove: bool,
        body: Value,
    ) -> Answer {
        let mut store = self.store.lock().unwrap();
        if store.module(module).is_err() {
            return invalid_module();
        }
        if store.layout() == seed::Layout::Field {
            return Answer::error(
                StatusCode::FORBIDDEN,
                "TERRITORY_NOT_ENABLED",
                "the territory feature is not enabled",
                json!({}),
            );
        }
        let max = if url_id.is_some() {
            1
        } else {
            MAX_TERRITORY_RECORDS
        };
        let items = match data_items(&body, max) {
            Ok(items) => items,
            Err(answer) => return answer,
        };
        let url_id = match url_id.map(str::parse::<u64>) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => {
                return Answer::bad(
                    "INVALID_DATA",
                    "The record Id given seems to be invalid",
                    json!({"resource_path_index": 1}),
                )
            }
        };
        let scheduled = self.switches.lock().unwrap().schedule_territory_jobs;
        let mut seen = HashSet::new();
        let mut results = Vec::new();
        let mut jobs = Vec::new();
        for item in items {
            let checked = store.check_territory_change(module, item, url_id, remove, &mut seen);
            results.push(match checked {
                Err(e) => Err(e),
                Ok((record, territories)) => {
                    let change = PendingChange {
                        record,
                        territories,
                        remove,
                    };
                    if scheduled {
                        let job = self.new_job_id();
                        store.schedule(record, &job);
                        jobs.push((change, job.clone()));
                        Ok((record, Some(job)))
                    } else {
                        store.change_territories(module, &change);
                        Ok((record, None))
                    }
                }
            });
        }
        drop(store);
        if !jobs.is_empty() {
            let app = Arc::clone(self);
            let module = module.to_string();
            let delay = self.job_delay();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let mut store = app.store.lock().unwrap();
                for (change, job) in jobs {
                    if store.pending_job(change.record) == Some(&job) {
                        store.change_territories(&module, &change);
                    }
                }
            });
        }
        let any_scheduled = results.iter().any(|r| matches!(r, Ok((_, Some(_)))));
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let data: Vec<Value> = results
            .into_iter()
            .enumerate()
            .map(|(i, r)| match r {
                Ok((id, Some(job))) => json!({
                    "code": "SCHEDULED",
                    "details": {"id": id.to_string(), "job_id": job},
                    "message": if remove { "Territory removal process scheduled successfully" } else { "Territory assignment process scheduled successfully" },
                    "status": "success",
                }),
                Ok((id, None)) => json!({
                    "code": "SUCCESS",
                    "details": {"id": id.to_string()},
                    "message": if remove { "the territories data removed successfully" } else { "the territories data updated successfully" },
                    "status": "success",
                }),
                Err(e) => record_error(&e, i, url_id.is_some()),
            })
            .collect();
        let status = if ok == data.len() {
            if any_scheduled {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            }
        } else if ok == 0 {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::MULTI_STATUS
        };
        Answer::json(status, json!({"data": data}))
    }

    fn headers_for(&self, answer: &Answer, headers: &mut HeaderMap) {
        let now = Instant::now();
        let (remaining, used, release) = {
            let mut ledger = self.ledger.lock().unwrap();
            (
                ledger.remaining(now),
                ledger.used(now),
                ledger.next_release(now),
            )
        };
        if used * 2 >= self.daily_credits {
            headers.insert("X-API-CREDITS-REMAINING", HeaderValue::from(remaining));
        }
        if self.headers == HeaderProfile::Legacy {
            let reset = chrono::Utc::now().timestamp() as u64 + release.as_secs();
            headers.insert("X-RATELIMIT-LIMIT", HeaderValue::from(self.daily_credits));
            headers.insert("X-RATELIMIT-REMAINING", HeaderValue::from(remaining));
            headers.insert("X-RATELIMIT-RESET", HeaderValue::from(reset));
            if let Some(wait) = answer.retry_after {
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                let turn = self.retry_after_turn.fetch_add(1, Ordering::Relaxed);
                let value = if turn % 2 == 0 {
                    secs.to_string()
                } else {
                    httpdate::fmt_http_date(
                        std::time::SystemTime::now() + Duration::from_secs(secs + 1),
                    )
                };
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(header::RETRY_AFTER, v);
                }
            }
        }
    }
}

fn api_name(name: &str) -> String {
    let mut out = String::new();
    for word in name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str(word);
    }
    out
}

fn parse_count(raw: Option<&String>, default: usize) -> Option<usize> {
    match raw {
        None => Some(default),
        Some(s) => s.trim().parse().ok(),
    }
}

/// An RFC 3339 date-time (Zoho's format) or an HTTP date.
fn parse_header_time(raw: &str) -> Option<i64> {
    coql::parse_time(raw).or_else(|| {
        httpdate::parse_http_date(raw.trim())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
    })
}

/// A write body's `data`: present, not empty, and at most `max` records.
fn data_items(body: &Value, max: usize) -> Result<&Vec<Value>, Answer> {
    let Some(items) = body
        .get("data")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
    else {
        return Err(Answer::bad(
            "MANDATORY_NOT_FOUND",
            "required field not found",
            json!({"api_name": "data", "json_path": "$.data"}),
        ));
    };
    if items.len() > max {
        return Err(Answer::bad(
            "LIMIT_EXCEEDED",
            "Record count exceeded",
            json!({"api_name": "data", "json_path": "$.data", "limit": max}),
        ));
    }
    Ok(items)
}

fn invalid_param(name: &str) -> Answer {
    Answer::bad("INVALID_DATA", "invalid data", json!({"param_name": name}))
}

fn invalid_module() -> Answer {
    Answer::bad(
        "INVALID_MODULE",
        "The module name given seems to be invalid",
        json!({"resource_path_index": 0}),
    )
}

fn ambiguity(params: &[&str]) -> Answer {
    Answer::bad(
        "AMBIGUITY_DURING_PROCESSING",
        "ambiguity while processing the request",
        json!({"ambiguity_due_to": params}),
    )
}

fn coql_answer(store: &Store, parsed: Option<Result<coql::Query, CoqlError>>) -> Answer {
    let query = match parsed {
        None => {
            return Answer::bad(
                "MANDATORY_NOT_FOUND",
                "required field not found",
                json!({"api_name": "select_query", "json_path": "$.select_query"}),
            )
        }
        Some(Err(e)) => return coql_error(&e),
        Some(Ok(q)) => q,
    };
    match store.coql(&query) {
        Err(StoreError::Coql(e)) => coql_error(&e),
        Err(e) => store_error(&e, None),
        Ok((rows, _)) if rows.is_empty() => Answer::empty(StatusCode::NO_CONTENT),
        Ok((rows, more)) => Answer::ok(json!({
            "data": rows,
            "info": {"count": rows.len(), "more_records": more},
        })),
    }
}

fn coql_error(e: &CoqlError) -> Answer {
    Answer::bad(e.code, &e.message, Value::Object(e.details.clone()))
}

/// A request-level store failure.
fn store_error(e: &StoreError, _index: Option<usize>) -> Answer {
    match e {
        StoreError::UnknownModule { .. } => invalid_module(),
        StoreError::UnknownField { field } => Answer::bad(
            "INVALID_DATA",
            "invalid data",
            json!({"param_name": "fields", "api_name": field}),
        ),
        StoreError::Coql(e) => coql_error(e),
        other => Answer::bad("INVALID_DATA", &other.to_string(), json!({})),
    }
}

/// A per-record failure inside `data`, for record `i` of the request.
fn record_error(e: &StoreError, i: usize, url_id: bool) -> Value {
    let path = |field: &str| format!("$.data[{i}].{field}");
    let id_details = || {
        if url_id {
            json!({"resource_path_index": 1})
        } else {
            json!({"api_name": "id", "json_path": path("id")})
        }
    };
    let territory_path = |index: usize| format!("$.data[{i}].Territories[{index}].id");
    match e {
        StoreError::UnknownRecord { .. } => zoho_error(
            "INVALID_DATA",
            "the id given seems to be invalid",
            id_details(),
        ),
        StoreError::UnknownField { field } => zoho_error(
            "INVALID_DATA",
            "the field api name given seems to be invalid",
            json!({"api_name": field, "json_path": path(field)}),
        ),
        StoreError::ReadOnly { field } => zoho_error(
            "INVALID_DATA",
            "the field cannot be written",
            json!({"api_name": field, "json_path": path(field)}),
        ),
        StoreError::InvalidValue {
            field,
            expected,
            supported,
        } => {
            let mut details = json!({"api_name": field, "json_path": path(field), "expected_data_type": expected});
            if !supported.is_empty() {
                details["supported_values"] = json!(supported);
            }
            zoho_error("INVALID_DATA", "invalid data", details)
        }
        StoreError::TooLong { field, max } => zoho_error(
            "INVALID_DATA",
            "invalid data",
            json!({"api_name": field, "json_path": path(field), "maximum_length": max.to_string()}),
        ),
        StoreError::Missing { field } => zoho_error(
            "MANDATORY_NOT_FOUND",
            "required field not found",
            json!({"api_name": field, "json_path": path(field)}),
        ),
        StoreError::DuplicateId { .. } => zoho_error(
            "ALREADY_USED",
            "the id is given more than once in the request",
            json!({"api_name": "id", "json_path": path("id")}),
        ),
        StoreError::Modified { id, modified_time } => zoho_error(
            "ALREADY_MODIFIED",
            "record modified after the time given in If-Unmodified-Since",
            json!({"id": id, "Modified_Time": modified_time}),
        ),
        StoreError::UnknownTerritory { index, .. } => zoho_error(
            "INVALID_DATA",
            "the id given seems to be invalid",
            json!({"api_name": "id", "json_path": territory_path(*index)}),
        ),
        StoreError::TerritoryRepeated { index, first, .. } => zoho_error(
            "ALREADY_USED",
            "duplicate territory id found",
            json!({"api_name": "id", "json_path": territory_path(*index),
                   "exists_in": {"json_path": territory_path(*first)}}),
        ),
        StoreError::TerritoryAssigned { index, .. } => zoho_error(
            "DUPLICATE_DATA",
            "Given Territory id already exists for that record",
            json!({"api_name": "id", "json_path": territory_path(*index)}),
        ),
        StoreError::TerritoryNotAssigned { index, .. } => zoho_error(
            "INVALID_DATA",
            "territory not assigned to this record",
            json!({"api_name": "id", "json_path": territory_path(*index)}),
        ),
        StoreError::TerritorySystemAssigned { index, .. } => zoho_error(
            "NOT_ALLOWED",
            "Territory id which you are trying to remove was system assigned",
            json!({"api_name": "id", "json_path": territory_path(*index)}),
        ),
        StoreError::TerritoryLimit { limit } => zoho_error(
            "LIMIT_EXCEEDED",
            "Maximum limit of territories for that record exceeds",
            json!({"api_name": "Territories", "json_path": format!("$.data[{i}].Territories"), "limit": limit}),
        ),
        StoreError::AlreadyScheduled { job_id } => zoho_error(
            "ALREADY_SCHEDULED",
            "a territory job is already scheduled for this record",
            json!({"job_id": job_id}),
        ),
        other => zoho_error("INVALID_DATA", &other.to_string(), json!({})),
    }
}

/// 200 all succeeded, 207 mixed, 412 when every failure is `ALREADY_MODIFIED` and none
/// succeeded, 400 all failed.
fn write_results(
    results: Vec<Result<Written, StoreError>>,
    success: impl Fn(&Written) -> Value,
) -> Answer {
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let modified = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Modified { .. })))
        .count();
    let total = results.len();
    let data: Vec<Value> = results
        .iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok(w) => success(w),
            Err(e) => record_error(e, i, false),
        })
        .collect();
    let status = if ok == total {
        StatusCode::OK
    } else if ok > 0 {
        StatusCode::MULTI_STATUS
    } else if modified > 0 {
        StatusCode::PRECONDITION_FAILED
    } else {
        StatusCode::BAD_REQUEST
    };
    Answer::json(status, json!({"data": data}))
}

fn into_response(answer: Answer, reset: bool, extra: HeaderMap) -> Response {
    let status = answer.status;
    let (content_type, bytes, disposition): (&str, Vec<u8>, Option<String>) = match answer.body {
        Payload::Json(v) => (
            "application/json;charset=UTF-8",
            serde_json::to_vec(&v).expect("json values serialize"),
            None,
        ),
        Payload::Empty => ("", Vec::new(), None),
        Payload::Text(t) => ("text/html;charset=UTF-8", t.as_bytes().to_vec(), None),
        Payload::File {
            content_type,
            name,
            bytes,
        } => (
            content_type,
            bytes,
            Some(format!("attachment; filename=\"{name}\"")),
        ),
    };
    let mut response = if reset {
        // Headers go out, then the body stops half-way and the connection drops.
        let half = bytes.len() / 2;
        let head = if half == 0 {
            Bytes::from_static(b"{\"data\":[")
        } else {
            Bytes::from(bytes[..half].to_vec())
        };
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(head),
            Err(std::io::Error::other("sandbox fault: connection reset")),
        ];
        let mut r = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
        *r.status_mut() = if status == StatusCode::NO_CONTENT {
            StatusCode::OK
        } else {
            status
        };
        r
    } else {
        let mut r = Response::new(Body::from(bytes));
        *r.status_mut() = status;
        r
    };
    let h = response.headers_mut();
    if !content_type.is_empty() {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if let Some(d) = disposition.and_then(|d| HeaderValue::from_str(&d).ok()) {
        h.insert(header::CONTENT_DISPOSITION, d);
    }
    h.insert(header::SERVER, HeaderValue::from_static("ZGS"));
    h.extend(extra);
    response
}

async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    let path = parts.uri.path().to_string();
    if let Some(rest) = path.strip_prefix("/__sandbox/") {
        return control(&app, &parts.method, rest, &body);
    }
    let query = parse_query(parts.uri.query());
    let route = Route::parse(&parts.method, &path);
    let key = route.key(&parts.method, &path);
    app.count(&key);
    let (answer, reset) = app
        .handle(&route, &key, &parts.headers, &query, &body)
        .await;
    let throttled = answer.status == StatusCode::TOO_MANY_REQUESTS;
    let mut extra = HeaderMap::new();
    if route != Route::Token {
        app.headers_for(&answer, &mut extra);
    }
    if reset {
        app.count_status("reset", false);
    } else {
        app.count_status(answer.status.as_str(), throttled);
    }
    into_response(answer, reset, extra)
}

fn control_error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

/// `/__sandbox/*`: stats, reset, faults, switches and test hooks; never counted.
fn control(app: &Arc<App>, method: &Method, rest: &str, body: &Bytes) -> Response {
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["stats"]) => axum::Json(app.stats()).into_response(),
        ("POST", ["reset"]) => {
            app.store.lock().unwrap().reset();
            *app.stats.lock().unwrap() = Stats::default();
            app.ledger.lock().unwrap().clear(Instant::now());
            app.gates.reset_peak();
            *app.bulk.lock().unwrap() = Bulk::default();
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET", ["faults"]) => {
            axum::Json(app.faults.lock().unwrap().faults.clone()).into_response()
        }
        ("POST", ["faults"]) => match serde_json::from_slice::<Faults>(body) {
            Err(e) => control_error(StatusCode::BAD_REQUEST, format!("invalid faults: {e}")),
            Ok(faults) => match faults.validate() {
                Err(e) => control_error(StatusCode::BAD_REQUEST, e),
                Ok(()) => {
                    *app.faults.lock().unwrap() = FaultPlan::new(faults.clone());
                    axum::Json(faults).into_response()
                }
            },
        },
        ("GET", ["config"]) => axum::Json(app.switches.lock().unwrap().clone()).into_response(),
        ("POST", ["config"]) => match serde_json::from_slice::<Switches>(body) {
            Err(e) => control_error(StatusCode::BAD_REQUEST, format!("invalid config: {e}")),
            Ok(s) => {
                *app.switches.lock().unwrap() = s.clone();
                axum::Json(s).into_response()
            }
        },
        ("POST", ["revoke_tokens"]) => {
            app.auth.lock().unwrap().revoke_all();
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET" | "PATCH", ["records", module, id]) => {
            let mut store = app.store.lock().unwrap();
            let Ok(module) = store.module(module) else {
                return control_error(StatusCode::NOT_FOUND, format!("unknown module `{module}`"));
            };
            let Ok(id) = id.parse::<u64>() else {
                return control_error(StatusCode::NOT_FOUND, format!("unknown record `{id}`"));
            };
            if method == Method::GET {
                return match store.get(module, id) {
                    Some(r) => axum::Json(r).into_response(),
                    None => control_error(StatusCode::NOT_FOUND, format!("unknown record `{id}`")),
                };
            }
            let changes: Map<String, Value> = match serde_json::from_slice(body) {
                Ok(c) => c,
                Err(e) => {
                    return control_error(
                        StatusCode::BAD_REQUEST,
                        format!("expected a JSON object of fields: {e}"),
                    )
                }
            };
            match store.edit(module, id, &changes) {
                Ok(r) => axum::Json(r).into_response(),
                Err(StoreError::UnknownRecord { id }) => {
                    control_error(StatusCode::NOT_FOUND, format!("unknown record `{id}`"))
                }
                Err(e) => control_error(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        _ => control_error(
            StatusCode::NOT_FOUND,
            format!("no sandbox control at `/__sandbox/{rest}`"),
        ),
    }
}

/// Serves `app` on `listener` until `shutdown`, writing the state file while it runs.
pub async fn run(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), SandboxError> {
    let router = Router::new()
        .fallback(dispatch)
        .with_state(Arc::clone(&app));
    let flusher = app.state_file.as_ref().map(|_| {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(state_file::FLUSH_EVERY).await;
                let app = Arc::clone(&app);
                let result = tokio::task::spawn_blocking(move || app.flush()).await;
                if let Ok(Err(e)) = result {
                    tracing::warn!("{e}");
                }
            }
        })
    });
    let closing = app.closing.clone();
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = closing.send(true);
        })
        .await;
    if let Some(flusher) = flusher {
        flusher.abort();
    }
    let flushed = app.flush();
    served.map_err(SandboxError::Serve)?;
    flushed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_stats_keys() {
        let r = Route::parse(&Method::GET, "/crm/v8/Accounts/5725767000000400001");
        assert_eq!(r.key(&Method::GET, ""), "GET /crm/v8/Accounts/{id}");
        let r = Route::parse(&Method::POST, "/crm/v8/Accounts/actions/assign_territories");
        assert_eq!(
            r.key(&Method::POST, ""),
            "POST /crm/v8/Accounts/actions/assign_territories"
        );
        assert_eq!(
            Route::parse(&Method::GET, "/crm/v8/settings/territories"),
            Route::Territories
        );
        assert_eq!(
            Route::parse(&Method::DELETE, "/crm/v8/Accounts"),
            Route::WrongMethod
        );
        assert_eq!(Route::parse(&Method::GET, "/nope"), Route::Unknown);
        assert_eq!(api_name("UK & Ireland"), "UK_Ireland");
    }
}
