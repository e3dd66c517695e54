//! Sandbox conformance and limit tests.
//!
//! Each test starts its own sandbox on 127.0.0.1:0 and talks to it with reqwest, the way
//! any Zoho client would; response shapes are checked against Zoho's OpenAPI files where
//! those are available beside the repository.

use std::time::Duration;

use realign::sandbox::{self, Edition, Faults, SandboxConfig, SandboxHandle, Seed};
use reqwest::StatusCode;
use serde_json::{json, Value};

const FIRST: &str = "5725767000000400001";

fn account_id(i: u64) -> String {
    (5_725_767_000_000_400_001u64 + i * 13).to_string()
}

struct Org {
    sandbox: SandboxHandle,
    http: reqwest::Client,
    token: String,
}

impl Org {
    async fn start(config: SandboxConfig) -> Org {
        let sandbox = sandbox::start(config).await.expect("sandbox starts");
        let http = reqwest::Client::new();
        let mut org = Org {
            sandbox,
            http,
            token: String::new(),
        };
        org.token = org.new_token().await;
        org
    }

    async fn demo() -> Org {
        Org::start(SandboxConfig::default()).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url())
    }

    async fn new_token(&self) -> String {
        self.sandbox
            .access_token()
            .await
            .expect("the token endpoint gives a token")
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header("Authorization", format!("Zoho-oauthtoken {}", self.token))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .auth(self.http.get(self.url(path)))
            .send()
            .await
            .unwrap();
        split(resp).await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PUT, path, body).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .auth(self.http.request(method, self.url(path)))
            .json(&body)
            .send()
            .await
            .unwrap();
        split(resp).await
    }

    async fn coql(&self, query: &str) -> (StatusCode, Value) {
        self.post("/crm/v8/coql", json!({ "select_query": query }))
            .await
    }

    async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let resp = self
            .http
            .request(method, self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        split(resp).await
    }
}

async fn split(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, body)
}

fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert_eq!(got.1["code"], code, "{}", got.1);
    assert_eq!(got.1["status"], "error", "{}", got.1);
    assert!(got.1["details"].is_object(), "{}", got.1);
    assert!(got.1["message"].is_string(), "{}", got.1);
}

#[tokio::test]
async fn token_grant_follows_the_reference() {
    let org = Org::demo().await;
    let body: Value = org
        .http
        .post(org.url(&format!(
            "/oauth/v2/token?grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
            sandbox::CLIENT_ID,
            sandbox::CLIENT_SECRET,
            sandbox::REFRESH_TOKEN
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["api_domain"], org.sandbox.base_url());
    let wrong: Value = org
        .http
        .post(org.url("/oauth/v2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", sandbox::CLIENT_ID),
            ("client_secret", "nope"),
            ("refresh_token", sandbox::REFRESH_TOKEN),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wrong, json!({"error": "invalid_client"}));
    // Two tokens minted so far; eight more are allowed in the window, then Access Denied.
    for _ in 0..8 {
        org.new_token().await;
    }
    let denied = org
        .http
        .post(org.url("/oauth/v2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", sandbox::CLIENT_ID),
            ("client_secret", sandbox::CLIENT_SECRET),
            ("refresh_token", sandbox::REFRESH_TOKEN),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::OK);
    let denied: Value = denied.json().await.unwrap();
    assert_eq!(denied["error"], "Access Denied");
    assert!(denied.get("access_token").is_none());
    let stats = org.sandbox.stats().await;
    assert_eq!(stats.by_endpoint["POST /oauth/v2/token"], 12);
    assert_eq!(stats.credits_used, 0);
}

#[tokio::test]
async fn missing_garbled_expired_and_revoked_tokens_are_refused() {
    let org = Org::start(SandboxConfig {
        token_ttl: Duration::from_millis(1000),
        ..SandboxConfig::default()
    })
    .await;
    let path = "/crm/v8/settings/territories";
    let none = split(org.http.get(org.url(path)).send().await.unwrap()).await;
    assert_error(&none, 401, "AUTHENTICATION_FAILURE");
    let garbled = split(
        org.http
            .get(org.url(path))
            .header("Authorization", "Bearer abc")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&garbled, 401, "AUTHENTICATION_FAILURE");
    assert_eq!(org.get(path).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = org.get(path).await;
    assert_error(&expired, 401, "INVALID_TOKEN");
    assert_eq!(expired.1["message"], "invalid oauth token");

    let org = Org::demo().await;
    assert_eq!(org.get(path).await.0, StatusCode::OK);
    org.control(reqwest::Method::POST, "/__sandbox/revoke_tokens", json!({}))
        .await;
    assert_error(&org.get(path).await, 401, "INVALID_TOKEN");
}

#[tokio::test]
async fn territories_form_the_example_tree() {
    let org = Org::demo().await;
    let (status, body) = org.get("/crm/v8/settings/territories").await;
    assert_eq!(status, StatusCode::OK);
    let list = body["territories"].as_array().unwrap();
    let find = |name: &str| {
        list.iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no territory `{name}`"))
            .clone()
    };
    let root = list.iter().find(|t| t["reporting_to"].is_null()).unwrap();
    assert_eq!(
        list.iter().filter(|t| t["reporting_to"].is_null()).count(),
        1
    );
    assert_eq!(find("EMEA")["reporting_to"]["id"], root["id"]);
    assert_eq!(find("DACH")["reporting_to"]["name"], "EMEA");
    assert_eq!(find("Canada")["reporting_to"]["name"], "North America");
    assert_eq!(find("Latin America")["reporting_to"]["id"], root["id"]);
    find("Emerging Markets");
    find("Strategic Accounts");
    assert_eq!(body["info"]["count"], list.len());
    assert_eq!(body["info"]["more_records"], false);
    let (_, page) = org
        .get("/crm/v8/settings/territories?per_page=5&page=2")
        .await;
    assert_eq!(page["territories"].as_array().unwrap().len(), 5);
    assert_eq!(page["info"]["more_records"], true);
    assert_error(
        &org.get("/crm/v8/settings/territories?per_page=2001").await,
        400,
        "INVALID_DATA",
    );
}

#[tokio::test]
async fn get_records_validates_parameters_like_zoho() {
    let org = Org::demo().await;
    let missing = org.get("/crm/v8/Accounts").await;
    assert_error(&missing, 400, "REQUIRED_PARAM_MISSING");
    assert_eq!(missing.1["details"]["param_name"], "fields");
    assert_error(
        &org.get("/crm/v8/Widgets?fields=id").await,
        400,
        "INVALID_MODULE",
    );
    let too_many: Vec<String> = (0..51).map(|i| format!("F{i}")).collect();
    assert_error(
        &org.get(&format!("/crm/v8/Accounts?fields={}", too_many.join(",")))
            .await,
        400,
        "LIMIT_EXCEEDED",
    );
    let deep = org
        .get("/crm/v8/Accounts?fields=Account_Name&page=11&per_page=200")
        .await;
    assert_error(&deep, 400, "DISCRETE_PAGINATION_LIMIT_EXCEEDED");
    assert_eq!(deep.1["details"]["limit"], 2000);
    assert_error(
        &org.get("/crm/v8/Accounts?fields=Account_Name&page=2&page_token=abc")
            .await,
        400,
        "AMBIGUITY_DURING_PROCESSING",
    );
    assert_error(
        &org.get("/crm/v8/Accounts?fields=Account_Name&per_page=201")
            .await,
        400,
        "INVALID_DATA",
    );
    assert_error(
        &org.get("/crm/v8/Accounts?fields=Account_Name&page_token=garbage")
            .await,
        400,
        "INVALID_DATA",
    );
    let (status, body) = org.get("/crm/v8/Contacts?fields=Last_Name").await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
}

#[tokio::test]
async fn get_records_pages_and_tokens_reach_every_account() {
    let org = Org::demo().await;
    let (status, first) = org
        .get("/crm/v8/Accounts?fields=Account_Name,Territory&sort_order=asc")
        .await;
    assert_eq!(status, StatusCode::OK);
    let data = first["data"].as_array().unwrap();
    assert_eq!(data.len(), 200);
    assert_eq!(data[0]["id"], FIRST);
    let keys: Vec<&String> = data[0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "id plus the two requested fields: {keys:?}");
    let info = &first["info"];
    for key in [
        "per_page",
        "next_page_token",
        "count",
        "sort_by",
        "page",
        "previous_page_token",
        "page_token_expiry",
        "sort_order",
        "more_records",
    ] {
        assert!(info.get(key).is_some(), "info lacks `{key}`: {info}");
    }
    assert_eq!(info["more_records"], true);
    let mut seen = data.len();
    let mut token = info["next_page_token"].as_str().unwrap().to_string();
    loop {
        let (status, page) = org
            .get(&format!(
                "/crm/v8/Accounts?fields=Account_Name,Territory&sort_order=asc&page_token={token}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen += page["data"].as_array().unwrap().len();
        if page["info"]["more_records"] == false {
            assert!(page["info"]["next_page_token"].is_null());
            break;
        }
        token = page["info"]["next_page_token"]
            .as_str()
            .unwrap()
            .to_string();
    }
    assert_eq!(seen, 2500);
    let mismatch = org
        .get(&format!(
            "/crm/v8/Accounts?fields=Account_Name&sort_order=asc&page_token={token}"
        ))
        .await;
    assert_error(&mismatch, 400, "TOKEN_BOUND_DATA_MISMATCH");
    // The default order is descending id.
    let (_, desc) = org
        .get("/crm/v8/Accounts?fields=Account_Name&per_page=1")
        .await;
    assert_eq!(desc["data"][0]["id"], account_id(2499));
    assert_eq!(desc["info"]["sort_order"], "desc");
    let ids = format!("{},{}", account_id(3), account_id(5));
    let (_, by_ids) = org
        .get(&format!("/crm/v8/Accounts?fields=Territory&ids={ids}"))
        .await;
    assert_eq!(by_ids["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn page_tokens_expire() {
    let org = Org::start(SandboxConfig {
        page_token_ttl: Duration::from_secs(0),
        ..SandboxConfig::default()
    })
    .await;
    let (_, first) = org.get("/crm/v8/Accounts?fields=Account_Name").await;
    let token = first["info"]["next_page_token"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = org
        .get(&format!(
            "/crm/v8/Accounts?fields=Account_Name&page_token={token}"
        ))
        .await;
    assert_error(&expired, 400, "EXPIRED_VALUE");
}

#[tokio::test]
async fn single_record_get_returns_every_field() {
    let org = Org::demo().await;
    let (status, body) = org.get(&format!("/crm/v8/Accounts/{FIRST}")).await;
    assert_eq!(status, StatusCode::OK);
    let r = &body["data"][0];
    for key in [
        "id",
        "Account_Name",
        "Billing_Country",
        "Billing_State",
        "Billing_City",
        "Industry",
        "Annual_Revenue",
        "Employees",
        "Territory",
        "Created_Time",
        "Modified_Time",
        "Owner",
    ] {
        assert!(r.get(key).is_some(), "record lacks `{key}`: {r}");
    }
    assert!(r["Annual_Revenue"].is_number());
    assert!(r["Employees"].is_i64());
    assert!(r["Owner"]["id"].is_string());
    let modified = r["Modified_Time"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(modified).is_ok(),
        "{modified}"
    );
    let (status, body) = org.get("/crm/v8/Accounts/5725767000000400002").await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_error(&org.get("/crm/v8/Accounts/abc").await, 400, "INVALID_DATA");
}

#[tokio::test]
async fn coql_answers_the_clients_queries() {
    let org = Org::demo().await;
    let mut after: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let filter = match &after {
            None => "id is not null".to_string(),
            Some(id) => format!("id > '{id}'"),
        };
        let (status, body) = org
            .coql(&format!(
                "select id, Account_Name, Territory, Billing_Country, Billing_State, Modified_Time from Accounts where {filter} order by id asc limit 2000"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let rows = body["data"].as_array().unwrap();
        assert_eq!(body["info"]["count"], rows.len());
        seen.extend(rows.iter().map(|r| r["id"].as_str().unwrap().to_string()));
        if body["info"]["more_records"] == false {
            break;
        }
        after = seen.last().cloned();
    }
    assert_eq!(seen.len(), 2500);
    assert_eq!(seen[0], FIRST);
    let stats = org.sandbox.stats().await;
    assert_eq!(stats.credits_by_endpoint["POST /crm/v8/coql"], 6);

    let (_, bare) = org
        .coql("select id from Accounts where id > 5725767000000400001 limit 1")
        .await;
    assert_eq!(bare["data"][0]["id"], account_id(1));
    let (_, offset) = org
        .coql("select Account_Name from Accounts where id is not null limit 10, 5")
        .await;
    assert_eq!(offset["data"][0]["id"], account_id(10));
    let (_, offset2) = org
        .coql("select Account_Name from Accounts where id is not null limit 5 offset 10")
        .await;
    assert_eq!(offset["data"], offset2["data"]);
    let ids = format!("('{}', '{}')", account_id(4), account_id(8));
    let (_, listed) = org
        .coql(&format!("select Territory from Accounts where id in {ids}"))
        .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    let (_, filtered) = org
        .coql("select Billing_Country from Accounts where (Billing_Country like '%germany%' or Billing_Country = 'Deutschland') limit 2000")
        .await;
    assert!(filtered["data"].as_array().unwrap().len() > 50);
    let (status, empty) = org
        .coql("select id from Accounts where Billing_Country = 'Atlantis'")
        .await;
    assert_eq!((status, empty), (StatusCode::NO_CONTENT, Value::Null));
}

#[tokio::test]
async fn coql_refuses_what_zoho_refuses() {
    let org = Org::demo().await;
    assert_error(
        &org.coql("select id from Accounts").await,
        400,
        "SYNTAX_ERROR",
    );
    let big = org
        .coql("select id from Accounts where id is not null limit 2001")
        .await;
    assert_error(&big, 400, "INVALID_QUERY");
    assert_eq!(big.1["details"]["limit"], 2001);
    assert_error(
        &org.coql("select id from Accounts where id is not null limit 99000, 2000")
            .await,
        400,
        "LIMIT_EXCEEDED",
    );
    let unknown = org
        .coql("select Nope from Accounts where id is not null")
        .await;
    assert_error(&unknown, 400, "INVALID_QUERY");
    assert_eq!(unknown.1["details"]["column_name"], "Nope");
    let native = Org::start(SandboxConfig {
        seed: Seed::Native,
        ..SandboxConfig::default()
    })
    .await;
    let territory = native
        .coql("select id from Accounts where Territories = 'EMEA'")
        .await;
    assert_error(&territory, 400, "INVALID_QUERY");
    assert_eq!(
        territory.1["message"],
        "Territory fields only supported in the SELECT clause"
    );
    let (status, body) = native
        .coql("select Territories from Accounts where id is not null limit 50")
        .await;
    assert_eq!(status, StatusCode::OK);
    let with = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Territories"].is_array())
        .expect("some account has territories");
    let first = &with["Territories"][0];
    assert!(
        first["name"].is_string() && first["id"].is_string(),
        "{first}"
    );
}

#[tokio::test]
async fn update_records_reports_each_record_in_order() {
    let org = Org::demo().await;
    let (status, body) = org
        .put(
            "/crm/v8/Accounts",
            json!({"data": [
                {"id": account_id(0), "Territory": "DACH"},
                {"id": account_id(1), "Territory": null},
            ], "trigger": []}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let item = &body["data"][0];
    assert_eq!(item["code"], "SUCCESS");
    assert_eq!(item["message"], "record updated");
    assert_eq!(item["details"]["id"], account_id(0));
    for key in ["Modified_Time", "Modified_By", "Created_Time", "Created_By"] {
        assert!(item["details"].get(key).is_some(), "{item}");
    }
    let (_, r) = org
        .get(&format!("/crm/v8/Accounts/{}", account_id(0)))
        .await;
    assert_eq!(r["data"][0]["Territory"], "DACH");
    assert_eq!(
        r["data"][0]["Modified_Time"],
        item["details"]["Modified_Time"]
    );

    let (status, mixed) = org
        .put(
            "/crm/v8/Accounts",
            json!({"data": [
                {"id": account_id(2), "Territory": "Emerging Markets"},
                {"id": "5725767000000400002", "Territory": "DACH"},
                {"id": account_id(3), "Territory": "Atlantis"},
                {"id": account_id(2), "Territory": "DACH"},
                {"id": account_id(4), "Colour": "blue"},
                {"Territory": "DACH"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{mixed}");
    let codes: Vec<&str> = mixed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "SUCCESS",
            "INVALID_DATA",
            "INVALID_DATA",
            "ALREADY_USED",
            "INVALID_DATA",
            "MANDATORY_NOT_FOUND"
        ]
    );
    let picklist = &mixed["data"][2]["details"];
    assert_eq!(picklist["api_name"], "Territory");
    assert_eq!(picklist["json_path"], "$.data[2].Territory");
    assert_eq!(picklist["expected_data_type"], "picklist");

    let (status, _) = org
        .put(
            "/crm/v8/Accounts",
            json!({"data": [{"id": account_id(3), "Territory": "Atlantis"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let hundred_one: Vec<Value> = (0..101)
        .map(|i| json!({"id": account_id(i), "Territory": "DACH"}))
        .collect();
    assert_error(
        &org.put("/crm/v8/Accounts", json!({ "data": hundred_one }))
            .await,
        400,
        "LIMIT_EXCEEDED",
    );
    assert_error(
        &org.put("/crm/v8/Accounts", json!({"data": []})).await,
        400,
        "MANDATORY_NOT_FOUND",
    );
    assert_error(
        &org.put("/crm/v8/Accounts", json!({})).await,
        400,
        "MANDATORY_NOT_FOUND",
    );
    let (status, single) = org
        .put(
            &format!("/crm/v8/Accounts/{}", account_id(9)),
            json!({"data": [{"Territory": "Japan"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{single}");
    let stats = org.sandbox.stats().await;
    assert_eq!(stats.by_endpoint["PUT /crm/v8/Accounts/{id}"], 1);
    assert!(stats.by_endpoint["PUT /crm/v8/Accounts"] >= 5);
}

#[tokio::test]
async fn if_unmodified_since_catches_a_change_made_in_the_ui() {
    let org = Org::demo().await;
    let id = account_id(11);
    let (_, before) = org.get(&format!("/crm/v8/Accounts/{id}")).await;
    let read_at = before["data"][0]["Modified_Time"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, edited) = org
        .control(
            reqwest::Method::PATCH,
            &format!("/__sandbox/records/Accounts/{id}"),
            json!({"Billing_Country": "France"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_ne!(edited["Modified_Time"], read_at);
    let resp = org
        .auth(org.http.put(org.url("/crm/v8/Accounts")))
        .header("If-Unmodified-Since", &read_at)
        .json(&json!({"data": [{"id": id, "Territory": "France"}]}))
        .send()
        .await
        .unwrap();
    let got = split(resp).await;
    assert_eq!(got.0, StatusCode::PRECONDITION_FAILED, "{}", got.1);
    assert_eq!(got.1["data"][0]["code"], "ALREADY_MODIFIED");
    let stats = org.sandbox.stats().await;
    assert!(!stats.by_endpoint.keys().any(|k| k.contains("__sandbox")));
}

#[tokio::test]
async fn standard_edition_concurrency_draws_429() {
    let org = Org::start(SandboxConfig {
        edition: Edition::Standard,
        faults: Faults {
            latency_ms: 400,
            ..Faults::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let calls = (0..30).map(|_| org.get("/crm/v8/Accounts?fields=Account_Name&per_page=1"));
    let results = futures_util::future::join_all(calls).await;
    let throttled: Vec<_> = results
        .iter()
        .filter(|r| r.0 == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(
        !throttled.is_empty(),
        "30 concurrent calls on a 10-call gate"
    );
    assert_error(throttled[0], 429, "TOO_MANY_REQUESTS");
    let stats = org.sandbox.stats().await;
    assert!(stats.max_in_flight <= 10, "{}", stats.max_in_flight);
    assert_eq!(stats.throttled as usize, throttled.len());
    assert_eq!(stats.by_status["429"] as usize, throttled.len());
}

#[tokio::test]
async fn credits_run_out_and_say_so() {
    let org = Org::start(SandboxConfig {
        daily_credits: Some(20),
        ..SandboxConfig::default()
    })
    .await;
    let first = org
        .auth(org.http.get(org.url("/crm/v8/settings/territories")))
        .send()
        .await
        .unwrap();
    assert!(first.headers().get("X-API-CREDITS-REMAINING").is_none());
    for _ in 0..9 {
        org.get("/crm/v8/settings/territories").await;
    }
    let half = org
        .auth(org.http.get(org.url("/crm/v8/settings/territories")))
        .send()
        .await
        .unwrap();
    assert_eq!(half.headers()["X-API-CREDITS-REMAINING"], "9");
    let ninety: Vec<Value> = (0..90)
        .map(|i| json!({"id": account_id(i), "Territory": "DACH"}))
        .collect();
    let (status, _) = org
        .put("/crm/v8/Accounts", json!({ "data": ninety.clone() }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let refused = org.put("/crm/v8/Accounts", json!({ "data": ninety })).await;
    assert_error(&refused, 429, "TOO_MANY_REQUESTS");
    let stats = org.sandbox.stats().await;
    assert_eq!(stats.credits_used, 20, "{stats:?}");
    assert_eq!(stats.credits_by_endpoint["PUT /crm/v8/Accounts"], 9);
}

#[tokio::test]
async fn reset_restores_the_seed_and_zeroes_stats() {
    let org = Org::demo().await;
    org.put(
        "/crm/v8/Accounts",
        json!({"data": [{"id": FIRST, "Territory": "Japan"}]}),
    )
    .await;
    let (status, _) = org
        .control(reqwest::Method::POST, "/__sandbox/reset", json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(org.sandbox.stats().await.requests, 0);
    let (_, r) = org.get(&format!("/crm/v8/Accounts/{FIRST}")).await;
    assert_ne!(r["data"][0]["Territory"], "Japan");
    let (status, _) = org
        .control(
            reqwest::Method::POST,
            "/__sandbox/faults",
            json!({"latency": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, stats) = org
        .control(reqwest::Method::GET, "/__sandbox/stats", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK);
    for key in [
        "requests",
        "by_endpoint",
        "throttled",
        "credits_used",
        "max_in_flight",
    ] {
        assert!(stats.get(key).is_some(), "{stats}");
    }
}

#[tokio::test]
async fn state_file_carries_the_org_from_one_run_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandbox-state.json");
    let config = || SandboxConfig {
        state_file: Some(path.clone()),
        ..SandboxConfig::default()
    };
    let org = Org::start(config()).await;
    assert!(path.exists(), "seeded and written at start");
    let (status, _) = org
        .put(
            "/crm/v8/Accounts",
            json!({"data": [{"id": FIRST, "Territory": "India"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    org.sandbox.shutdown().await.unwrap();

    let org = Org::start(config()).await;
    let (_, r) = org.get(&format!("/crm/v8/Accounts/{FIRST}")).await;
    assert_eq!(r["data"][0]["Territory"], "India");
    org.sandbox.shutdown().await.unwrap();

    std::fs::write(&path, "{not json").unwrap();
    let err = sandbox::start(config())
        .await
        .err()
        .expect("corrupt file refused");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("delete"),
        "{text}"
    );
}

#[test]
fn env_lines_point_a_client_at_the_sandbox() {
    let lines = sandbox::env_lines("http://127.0.0.1:4321");
    assert_eq!(
        lines,
        "export ZOHO_CLIENT_ID=realign-sandbox\n\
         export ZOHO_CLIENT_SECRET=realign-sandbox-secret\n\
         export ZOHO_REFRESH_TOKEN=realign-sandbox-refresh\n\
         export ZOHO_ACCOUNTS_URL=http://127.0.0.1:4321\n\
         export ZOHO_API_DOMAIN=http://127.0.0.1:4321\n"
    );
    assert_eq!("large".parse::<Seed>().unwrap().to_string(), "large");
    assert!("huge".parse::<Seed>().unwrap_err().contains("`huge`"));
}

async fn native() -> Org {
    Org::start(SandboxConfig {
        seed: Seed::Native,
        ..SandboxConfig::default()
    })
    .await
}

/// The first native-seed account whose memberships satisfy `want`.
async fn find_account(org: &Org, want: impl Fn(&[Value]) -> bool) -> (String, Vec<Value>) {
    let (_, page) = org
        .get("/crm/v8/Accounts?fields=Territories&sort_order=asc")
        .await;
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let list = r["Territories"].as_array().cloned().unwrap_or_default();
            (r["id"].as_str().unwrap().to_string(), list)
        })
        .find(|(_, list)| want(list))
        .expect("a matching account in the first 200")
}

fn territory_id_of(org_territories: &Value, name: &str) -> String {
    org_territories["territories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn native_seed_assigns_and_removes_territories_like_zoho() {
    let org = native().await;
    let (_, territories) = org.get("/crm/v8/settings/territories").await;
    let dach = territory_id_of(&territories, "DACH");
    let japan = territory_id_of(&territories, "Japan");

    let (id, _) = find_account(&org, |l| l.is_empty()).await;
    let assign = |id: &str, ts: &[&str]| {
        let ts: Vec<Value> = ts.iter().map(|t| json!({ "id": t })).collect();
        json!({"data": [{"id": id, "Territories": ts}]})
    };
    let path = "/crm/v8/Accounts/actions/assign_territories";
    let (status, body) = org.post(path, assign(&id, &[&dach])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"][0]["code"], "SUCCESS");
    assert_eq!(body["data"][0]["details"]["id"], id.as_str());
    let (_, record) = org.get(&format!("/crm/v8/Accounts/{id}")).await;
    let member = &record["data"][0]["Territories"][0];
    assert_eq!(member["Name"], "DACH");
    assert_eq!(member["$assigned"], "manually");
    assert!(member["$assigned_by"]["id"].is_string());
    assert!(member["$assigned_time"].is_string());

    let (status, again) = org.post(path, assign(&id, &[&dach])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(again["data"][0]["code"], "DUPLICATE_DATA");
    let (_, twice) = org.post(path, assign(&id, &[&japan, &japan])).await;
    assert_eq!(twice["data"][0]["code"], "ALREADY_USED");
    let (_, bogus) = org.post(path, assign(&id, &["123"])).await;
    assert_eq!(bogus["data"][0]["code"], "INVALID_DATA");
    assert_eq!(
        bogus["data"][0]["details"]["json_path"],
        "$.data[0].Territories[0].id"
    );

    let remove = "/crm/v8/Accounts/actions/remove_territories";
    let (status, removed) = org.post(remove, assign(&id, &[&dach])).await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(
        removed["data"][0]["message"],
        "the territories data removed successfully"
    );
    let (_, gone) = org.post(remove, assign(&id, &[&dach])).await;
    assert_eq!(gone["data"][0]["code"], "INVALID_DATA");

    let (auto_id, auto_list) = find_account(&org, |l| {
        l.iter().any(|m| m["$assigned"] == "automatically")
    })
    .await;
    let auto_territory = auto_list
        .iter()
        .find(|m| m["$assigned"] == "automatically")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, system) = org.post(remove, assign(&auto_id, &[&auto_territory])).await;
    assert_eq!(system["data"][0]["code"], "NOT_ALLOWED");

    let all: Vec<String> = territories["territories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let eleven: Vec<&str> = all.iter().take(11).map(String::as_str).collect();
    let (_, capped) = org.post(path, assign(&id, &eleven)).await;
    assert_eq!(capped["data"][0]["code"], "LIMIT_EXCEEDED");
    assert_eq!(capped["data"][0]["details"]["limit"], 10);

    let records: Vec<Value> = (0..11)
        .map(|i| json!({"id": account_id(i), "Territories": [{"id": dach}]}))
        .collect();
    assert_error(
        &org.post(path, json!({ "data": records })).await,
        400,
        "LIMIT_EXCEEDED",
    );
    let (status, single) = org
        .post(
            &format!("/crm/v8/Accounts/{id}/actions/assign_territories"),
            json!({"data": [{"Territories": [{"id": japan}]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{single}");
    let stats = org.sandbox.stats().await;
    assert!(stats.by_endpoint["POST /crm/v8/Accounts/actions/assign_territories"] >= 5);
    assert_eq!(
        stats.by_endpoint["POST /crm/v8/Accounts/{id}/actions/assign_territories"],
        1
    );

    let demo = Org::demo().await;
    assert_error(
        &demo.post(path, assign(FIRST, &[&dach])).await,
        403,
        "TERRITORY_NOT_ENABLED",
    );
}

#[tokio::test]
async fn scheduled_territory_jobs_finish_later() {
    let org = native().await;
    let (status, _) = org
        .control(
            reqwest::Method::POST,
            "/__sandbox/config",
            json!({"schedule_territory_jobs": true, "job_delay_ms": 300}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, territories) = org.get("/crm/v8/settings/territories").await;
    let india = territory_id_of(&territories, "India");
    let (id, _) = find_account(&org, |l| l.is_empty()).await;
    let body = json!({"data": [{"id": id, "Territories": [{"id": india}]}]});
    let path = "/crm/v8/Accounts/actions/assign_territories";
    let (status, queued) = org.post(path, body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["data"][0]["code"], "SCHEDULED");
    assert!(queued["data"][0]["details"]["job_id"].is_string());
    let (_, pending) = org.post(path, body).await;
    assert_eq!(pending["data"][0]["code"], "ALREADY_SCHEDULED");
    let record = poll(&org, &format!("/crm/v8/Accounts/{id}"), |r| {
        r["data"][0]["Territories"][0]["Name"] == "India"
    })
    .await;
    assert_eq!(record["data"][0]["Territories"][0]["$assigned"], "manually");
}

#[tokio::test]
async fn records_of_a_territory_include_children_on_request() {
    let org = native().await;
    let (_, territories) = org.get("/crm/v8/settings/territories").await;
    let emea = territory_id_of(&territories, "EMEA");
    let dach = territory_id_of(&territories, "DACH");
    let (status, direct) = org
        .get(&format!(
            "/crm/v8/Accounts?fields=Territories&territory_id={dach}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    for r in direct["data"].as_array().unwrap() {
        let list = r["Territories"].as_array().unwrap();
        assert!(list.iter().any(|m| m["id"] == dach.as_str()), "{r}");
    }
    let count = |v: &Value| v["data"].as_array().map_or(0, Vec::len);
    let (_, only) = org
        .get(&format!(
            "/crm/v8/Accounts?fields=Territories&territory_id={emea}"
        ))
        .await;
    let (_, tree) = org
        .get(&format!(
            "/crm/v8/Accounts?fields=Territories&territory_id={emea}&include_child=true"
        ))
        .await;
    assert!(
        count(&tree) > count(&only),
        "{} vs {}",
        count(&tree),
        count(&only)
    );
}

#[tokio::test]
async fn faults_are_seeded_and_deterministic() {
    let faults = Faults {
        seed: 42,
        error_rate: 0.3,
        throttle_rate: 0.2,
        ..Faults::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let org = Org::start(SandboxConfig {
            faults: faults.clone(),
            ..SandboxConfig::default()
        })
        .await;
        let mut statuses = Vec::new();
        for _ in 0..40 {
            statuses.push(org.get("/crm/v8/settings/territories").await.0.as_u16());
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    let errors = runs[0].iter().filter(|s| **s >= 500).count();
    let throttled = runs[0].iter().filter(|s| **s == 429).count();
    assert!(errors > 3 && throttled > 2, "{:?}", runs[0]);
    assert!(runs[0].contains(&200));
}

#[tokio::test]
async fn server_errors_resets_and_stalls_break_the_call_not_the_sandbox() {
    let org = Org::demo().await;
    let set = |faults: Value| org.control(reqwest::Method::POST, "/__sandbox/faults", faults);
    set(json!({"error_rate": 1.0})).await;
    let (status, body) = org.get("/crm/v8/settings/territories").await;
    assert!(status.is_server_error(), "{status}");
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        assert_eq!(body["code"], "INTERNAL_ERROR");
    }

    set(json!({"reset_rate": 1.0})).await;
    let resp = org
        .auth(org.http.get(org.url("/crm/v8/settings/territories")))
        .send()
        .await;
    let broken = match resp {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(broken, "the body should break off");

    set(json!({"stall_rate": 1.0, "stall_ms": 5000})).await;
    let slow = org
        .auth(org.http.get(org.url("/crm/v8/settings/territories")))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(slow.unwrap_err().is_timeout());

    set(json!({})).await;
    assert_eq!(
        org.get("/crm/v8/settings/territories").await.0,
        StatusCode::OK
    );
    let stats = org.sandbox.stats().await;
    assert_eq!(stats.by_status["reset"], 1);
    org.sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn neighbours_take_slots_and_credits() {
    let org = Org::start(SandboxConfig {
        faults: Faults {
            neighbour_concurrency: 20,
            ..Faults::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    assert_error(
        &org.get("/crm/v8/settings/territories").await,
        429,
        "TOO_MANY_REQUESTS",
    );

    let org = Org::start(SandboxConfig {
        daily_credits: Some(1000),
        faults: Faults {
            neighbour_credits_per_min: 6_000_000,
            ..Faults::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_error(
        &org.get("/crm/v8/settings/territories").await,
        429,
        "TOO_MANY_REQUESTS",
    );
    assert_eq!(org.sandbox.stats().await.credits_used, 0);
}

#[tokio::test]
async fn latency_delays_every_api_answer() {
    let org = Org::start(SandboxConfig {
        faults: Faults {
            latency_ms: 200,
            jitter_ms: 50,
            ..Faults::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let started = std::time::Instant::now();
    assert_eq!(
        org.get("/crm/v8/settings/territories").await.0,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn faults_file_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("faults.json");
    std::fs::write(
        &good,
        r#"{"seed": 3, "latency_ms": 20, "error_rate": 0.05}"#,
    )
    .unwrap();
    let faults = Faults::from_file(&good).unwrap();
    assert_eq!((faults.seed, faults.latency_ms), (3, 20));
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"error_rat": 0.05}"#).unwrap();
    let err = Faults::from_file(&bad).unwrap_err().to_string();
    assert!(
        err.contains("bad.json") && err.contains("error_rat"),
        "{err}"
    );
}

#[tokio::test]
async fn legacy_headers_add_ratelimit_and_retry_after() {
    let org = Org::start(SandboxConfig {
        headers: sandbox::HeaderProfile::Legacy,
        faults: Faults {
            throttle_rate: 1.0,
            ..Faults::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let mut forms = Vec::new();
    for _ in 0..2 {
        let resp = org
            .auth(org.http.get(org.url("/crm/v8/settings/territories")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let h = resp.headers();
        for name in [
            "X-RATELIMIT-LIMIT",
            "X-RATELIMIT-REMAINING",
            "X-RATELIMIT-RESET",
        ] {
            assert!(h.get(name).is_some(), "no `{name}`");
        }
        forms.push(h["Retry-After"].to_str().unwrap().to_string());
    }
    assert!(forms[0].parse::<u64>().is_ok(), "{forms:?}");
    assert!(httpdate::parse_http_date(&forms[1]).is_ok(), "{forms:?}");

    let standard = Org::start(SandboxConfig {
        faults: Faults {
            throttle_rate: 1.0,
            ..Faults::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let resp = standard
        .auth(
            standard
                .http
                .get(standard.url("/crm/v8/settings/territories")),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("Retry-After").is_none());
    assert!(resp.headers().get("X-RATELIMIT-LIMIT").is_none());
}

#[tokio::test]
async fn large_seed_serves_a_million_accounts_on_demand() {
    let org = Org::start(SandboxConfig {
        seed: Seed::Large {
            accounts: 1_000_000,
        },
        ..SandboxConfig::default()
    })
    .await;
    let last = account_id(999_999);
    let (_, newest) = org
        .get("/crm/v8/Accounts?fields=Account_Name&per_page=1")
        .await;
    assert_eq!(newest["data"][0]["id"], last.as_str());
    let (status, tail) = org
        .coql(&format!(
            "select id, Territory from Accounts where id > '{}' order by id asc limit 2000",
            account_id(998_999)
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tail["data"].as_array().unwrap().len(), 1000);
    assert_eq!(tail["info"]["more_records"], false);
    let (status, _) = org.get(&format!("/crm/v8/Accounts/{last}")).await;
    assert_eq!(status, StatusCode::OK);
}

fn zip_csv(name: &str, csv: &str) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(name, zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(csv.as_bytes()).unwrap();
    w.finish().unwrap().into_inner()
}

fn unzip_csv(bytes: &[u8]) -> Vec<Vec<String>> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut text = String::new();
    archive
        .by_index(0)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

async fn poll(org: &Org, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..50 {
        let (status, body) = org.get(path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if done(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job at `{path}` never finished");
}

#[tokio::test]
async fn bulk_write_updates_records_from_a_zipped_csv() {
    let org = Org::demo().await;
    let csv = format!(
        "id,Territory\n{},DACH\n{},Atlantis\n5725767000000400002,DACH\n",
        account_id(20),
        account_id(21)
    );
    let form = || {
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(zip_csv("accounts.csv", &csv))
                .file_name("accounts.zip"),
        )
    };
    let refused = org
        .auth(org.http.post(org.url("/crm/v8/upload")))
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let (_, orgs) = org.get("/crm/v8/org").await;
    let zgid = orgs["org"][0]["zgid"].as_str().unwrap().to_string();
    let uploaded = split(
        org.auth(org.http.post(org.url("/crm/v8/upload")))
            .header("feature", "bulk-write")
            .header("X-CRM-ORG", &zgid)
            .multipart(form())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(uploaded.0, StatusCode::OK, "{}", uploaded.1);
    assert_eq!(uploaded.1["code"], "FILE_UPLOAD_SUCCESS");
    let file_id = uploaded.1["details"]["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, created) = org
        .post(
            "/crm/bulk/v8/write",
            json!({"operation": "update", "ignore_empty": true, "resource": [{
                "type": "data", "module": {"api_name": "Accounts"}, "file_id": file_id,
                "find_by": "id",
                "field_mappings": [{"api_name": "id", "index": 0}, {"api_name": "Territory", "index": 1}],
            }]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let job = created["details"]["id"].as_str().unwrap().to_string();
    let done = poll(&org, &format!("/crm/bulk/v8/write/{job}"), |b| {
        b["status"] == "COMPLETED"
    })
    .await;
    let file = &done["resource"][0]["file"];
    assert_eq!(
        (file["updated_count"].clone(), file["skipped_count"].clone()),
        (json!(1), json!(2))
    );
    let url = done["result"]["download_url"].as_str().unwrap();
    let zip = org
        .auth(org.http.get(url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let rows = unzip_csv(&zip);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0][2], "updated");
    assert_eq!(rows[1][2], "skipped");
    assert_eq!(rows[1][4], "INVALID_DATA-Territory");
    assert_eq!(rows[2][4], "RESOURCE_NOT_FOUND-id");
    let (_, r) = org
        .get(&format!("/crm/v8/Accounts/{}", account_id(20)))
        .await;
    assert_eq!(r["data"][0]["Territory"], "DACH");
    let stats = org.sandbox.stats().await;
    assert_eq!(stats.credits_by_endpoint["POST /crm/bulk/v8/write"], 500);
    assert_error(
        &org.post("/crm/bulk/v8/write", json!({"resource": []}))
            .await,
        400,
        "MANDATORY_NOT_FOUND",
    );
}

#[tokio::test]
async fn bulk_read_exports_matching_records_and_limits_downloads() {
    let org = Org::demo().await;
    let (status, created) = org
        .post(
            "/crm/bulk/v8/read",
            json!({"query": {
                "module": {"api_name": "Accounts"},
                "fields": ["Account_Name", "Billing_Country", "Territory"],
                "criteria": {"field": {"api_name": "Billing_Country"}, "comparator": "equal", "value": "France"},
                "page": 1,
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["data"][0]["code"], "ADDED_SUCCESSFULLY");
    let job = created["data"][0]["details"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = poll(&org, &format!("/crm/bulk/v8/read/{job}"), |b| {
        b["data"][0]["state"] == "COMPLETED"
    })
    .await;
    let result = &done["data"][0]["result"];
    assert_eq!(result["per_page"], 200_000);
    assert_eq!(result["more_records"], false);
    let url = org.url(result["download_url"].as_str().unwrap());
    let zip = org
        .auth(org.http.get(&url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let rows = unzip_csv(&zip);
    assert_eq!(rows.len() as u64, result["count"].as_u64().unwrap());
    assert!(rows.len() > 20);
    assert!(
        rows.iter().all(|r| r[2].eq_ignore_ascii_case("france")),
        "{rows:?}"
    );
    for _ in 0..9 {
        org.auth(org.http.get(&url)).send().await.unwrap();
    }
    let eleventh = org.auth(org.http.get(&url)).send().await.unwrap();
    assert_eq!(eleventh.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_error(
        &org.get("/crm/bulk/v8/read/123").await,
        404,
        "RESOURCE_NOT_FOUND",
    );

    let native = native().await;
    let (status, refused) = native
        .post(
            "/crm/bulk/v8/read",
            json!({"query": {"module": {"api_name": "Accounts"}, "fields": ["Territories"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["code"], "FIELD_NOT_SUPPORTED");
}

/// A validator for the JSON-Schema subset Zoho's OpenAPI files use (`$ref` across the
/// local files, `oneOf`/`anyOf`/`allOf`, `type`, `nullable`, `properties`, `required`,
/// `items`, `enum`, `minItems`/`maxItems`, `format: date-time`).
///
/// Two deliberate leniencies, both because the OAS itself is inconsistent:
/// - `oneOf` passes when any branch passes: Zoho's branches overlap (an object with only
///   optional properties matches every branch), so "exactly one" would reject every body.
/// - `message` enums are not enforced: they list sample texts, and the reference says
///   clients must not depend on message text.
///
/// A `$ref` to a file that is not in `zoho-oas-v8/` (users.json, modules.json, ...) is
/// treated as "any value".
struct Oas {
    dir: std::path::PathBuf,
    docs: std::collections::HashMap<String, Value>,
}

/// Properties the reference documents as `null` where the OAS omits `nullable`
/// (reference sections 2.2 and 5.2: paging tokens and the root territory's parent).
const NULL_OK: &[&str] = &[
    "reporting_to",
    "account_rule_criteria",
    "deal_rule_criteria",
    "lead_rule_criteria",
    "next_page_token",
    "previous_page_token",
    "page_token_expiry",
    "$assigned_by",
];

/// Error codes the reference documents (from Zoho's newer per-operation OAS files and
/// docs) that the older JSON files' `code` enums lack.
const CODES_FROM_REFERENCE: &[&str] = &[
    "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
    "PAGINATION_LIMIT_EXCEEDED",
    "TOKEN_BOUND_DATA_MISMATCH",
    "EXPIRED_VALUE",
    "AMBIGUITY_DURING_PROCESSING",
    "TOO_MANY_REQUESTS",
    "ALREADY_MODIFIED",
];

impl Oas {
    fn load() -> Option<Oas> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/reference/zoho-oas-v8");
        if !dir.is_dir() {
            eprintln!(
                "note: `{}` is absent; skipping the OpenAPI conformance checks",
                dir.display()
            );
            return None;
        }
        let mut docs = std::collections::HashMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&path).unwrap();
                docs.insert(name, serde_json::from_str(&text).unwrap());
            }
        }
        Some(Oas { dir, docs })
    }

    /// `(file, schema)` a `$ref` points at, or `None` when its file is not here.
    fn resolve(&self, file: &str, reference: &str) -> Option<(String, Value)> {
        let (target, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let target = if target.is_empty() {
            file.to_string()
        } else {
            target.rsplit('/').next().unwrap().to_string()
        };
        let doc = self.docs.get(&target)?;
        let schema = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("`{reference}` from `{file}` does not resolve"));
        Some((target, schema.clone()))
    }

    /// The response schema of `method path` for `status` in `file`.
    fn response(&self, file: &str, path: &str, method: &str, status: &str) -> (String, Value) {
        let doc = &self.docs[file];
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "no `{method} {path}` in `{file}`");
        let mut resp = op["responses"][status].clone();
        let mut file = file.to_string();
        if let Some(r) = resp.get("$ref").and_then(Value::as_str) {
            (file, resp) = self.resolve(&file, r).expect("local response ref");
        }
        let content = resp["content"].as_object().expect("response content");
        let schema = content.values().next().unwrap()["schema"].clone();
        (file, schema)
    }

    fn check(&self, file: &str, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            if let Some((f, s)) = self.resolve(file, r) {
                self.check(&f, &s, v, at, errors);
            }
            return;
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(branches) = schema.get(key).and_then(Value::as_array) {
                let mut best: Option<Vec<String>> = None;
                for b in branches {
                    if !self.shares_keys(file, b, v) {
                        continue;
                    }
                    let mut e = Vec::new();
                    self.check(file, b, v, at, &mut e);
                    if e.is_empty() {
                        return;
                    }
                    if best.as_ref().is_none_or(|x| e.len() < x.len()) {
                        best = Some(e);
                    }
                }
                errors.push(format!("{at}: matches no `{key}` branch"));
                errors.extend(best.unwrap_or_default());
                return;
            }
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.check(file, s, v, at, errors);
            }
        }
        let name = at.rsplit('.').next().unwrap_or("");
        if v.is_null() {
            let nullable = schema.get("nullable") == Some(&json!(true)) || NULL_OK.contains(&name);
            if !nullable && schema.get("type").is_some() {
                errors.push(format!(
                    "{at}: null where the schema wants {}",
                    schema["type"]
                ));
            }
            return;
        }
        let ok = match schema.get("type").and_then(Value::as_str) {
            Some("object") => v.is_object(),
            Some("array") => v.is_array(),
            Some("string") => v.is_string(),
            Some("integer") => v.is_i64() || v.is_u64(),
            Some("number") => v.is_number(),
            Some("boolean") => v.is_boolean(),
            _ => true,
        };
        if !ok {
            errors.push(format!("{at}: `{v}` is not of type {}", schema["type"]));
            return;
        }
        if let (Some(allowed), false) = (
            schema.get("enum").and_then(Value::as_array),
            name == "message",
        ) {
            let documented = name == "code"
                && v.as_str()
                    .is_some_and(|c| CODES_FROM_REFERENCE.contains(&c));
            if !allowed.contains(v) && !documented {
                errors.push(format!("{at}: `{v}` is not one of {}", schema["enum"]));
            }
        }
        if schema.get("format") == Some(&json!("date-time")) {
            if let Some(s) = v.as_str() {
                if chrono::DateTime::parse_from_rfc3339(s).is_err() {
                    errors.push(format!("{at}: `{s}` is not a date-time"));
                }
            }
        }
        if let Some(obj) = v.as_object() {
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let req = req.as_str().unwrap();
                if !obj.contains_key(req) {
                    errors.push(format!("{at}: lacks required `{req}`"));
                }
            }
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    if let Some(child) = obj.get(k) {
                        self.check(file, sub, child, &format!("{at}.{k}"), errors);
                    }
                }
            }
        }
        if let Some(items) = v.as_array() {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if items.len() as u64 > max {
                    errors.push(format!("{at}: {} items, at most {max}", items.len()));
                }
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    errors.push(format!("{at}: {} items, at least {min}", items.len()));
                }
            }
            if let Some(item) = schema.get("items") {
                for (i, x) in items.iter().enumerate() {
                    self.check(file, item, x, &format!("{at}[{i}]"), errors);
                }
            }
        }
    }

    /// Whether `v` could be meant for `schema`: an object shares at least one key with an
    /// object schema's properties (Zoho's `oneOf` branches have no discriminator, and a
    /// schema of optional properties matches any object).
    fn shares_keys(&self, file: &str, schema: &Value, v: &Value) -> bool {
        let (mut file, mut schema) = (file.to_string(), schema.clone());
        while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            match self.resolve(&file, r) {
                Some((f, s)) => (file, schema) = (f, s),
                None => return true,
            }
        }
        match (
            v.as_object(),
            schema.get("properties").and_then(Value::as_object),
        ) {
            (Some(obj), Some(props)) if !props.is_empty() && !obj.is_empty() => {
                obj.keys().any(|k| props.contains_key(k))
            }
            _ => true,
        }
    }

    /// Errors of `body` against `method path`'s `status` response in `file`.
    fn errors(
        &self,
        file: &str,
        path: &str,
        method: &str,
        status: &str,
        body: &Value,
    ) -> Vec<String> {
        let (f, schema) = self.response(file, path, method, status);
        let mut errors = Vec::new();
        self.check(&f, &schema, body, "$", &mut errors);
        errors
    }
}

#[test]
fn the_validator_rejects_what_it_should() {
    let Some(oas) = Oas::load() else { return };
    let errors = oas.errors(
        "territories.json",
        "/crm/v8/settings/territories",
        "get",
        "200",
        &json!({"territories": [{"id": 5, "name": "x"}], "info": {"per_page": 1, "count": 1, "page": 1, "more_records": false}}),
    );
    assert!(
        errors.iter().any(|e| e.contains("$.territories[0].id")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("lacks required `api_name`")),
        "{errors:?}"
    );
    let errors = oas.errors(
        "record.json",
        "/crm/v8/{module_api_name}",
        "put",
        "200",
        &json!({"data": [{"code": "SUCCESS", "status": "fine", "details": {"id": 1}}]}),
    );
    assert!(errors.iter().any(|e| e.contains("$.data[0]")), "{errors:?}");
    assert!(oas.dir.is_dir());
}

#[tokio::test]
async fn responses_match_zoho_openapi_schemas() {
    let Some(oas) = Oas::load() else { return };
    let org = Org::demo().await;
    let native = native().await;
    let mut checked: Vec<(&str, &str, &str, &str, Value)> = Vec::new();
    let record = "/crm/v8/{module_api_name}";
    let one = "/crm/v8/{module_api_name}/{id}";

    let (_, territories) = org.get("/crm/v8/settings/territories").await;
    checked.push((
        "territories.json",
        "/crm/v8/settings/territories",
        "get",
        "200",
        territories.clone(),
    ));
    let (_, list) = org
        .get("/crm/v8/Accounts?fields=Account_Name,Territory,Owner,Modified_Time&per_page=50")
        .await;
    checked.push(("record.json", record, "get", "200", list.clone()));
    let token = list["info"]["next_page_token"].as_str().unwrap();
    let (_, next) = org
        .get(&format!(
            "/crm/v8/Accounts?fields=Account_Name,Territory,Owner,Modified_Time&per_page=50&page_token={token}"
        ))
        .await;
    checked.push(("record.json", record, "get", "200", next));
    let (_, single) = native.get(&format!("/crm/v8/Accounts/{FIRST}")).await;
    checked.push(("record.json", one, "get", "200", single));
    for path in [
        "/crm/v8/Accounts",
        "/crm/v8/Accounts?fields=Nope",
        "/crm/v8/Accounts?fields=id&page=11",
    ] {
        let (_, e) = org.get(path).await;
        checked.push(("record.json", record, "get", "200", e));
    }
    let (_, updated) = org
        .put(
            "/crm/v8/Accounts",
            json!({"data": [
                {"id": account_id(0), "Territory": "DACH"},
                {"id": account_id(1), "Territory": "Atlantis"},
                {"id": account_id(2), "Nope": 1},
                {"Territory": "DACH"},
                {"id": account_id(0), "Territory": "DACH"},
            ]}),
        )
        .await;
    checked.push(("record.json", record, "put", "200", updated));
    let (_, put_one) = org
        .put(
            &format!("/crm/v8/Accounts/{}", account_id(3)),
            json!({"data": [{"Territory": null}]}),
        )
        .await;
    checked.push(("record.json", one, "put", "200", put_one));
    let (_, too_many) = org
        .put(
            "/crm/v8/Accounts",
            json!({"data": (0..101).map(|i| json!({"id": account_id(i)})).collect::<Vec<_>>()}),
        )
        .await;
    checked.push(("record.json", record, "put", "200", too_many));

    let (_, rows) = org
        .coql("select Account_Name, Territory, Owner, Modified_Time from Accounts where id is not null limit 300")
        .await;
    checked.push(("coql.json", "/crm/v8/coql", "post", "200", rows));
    for bad in [
        "select id from Accounts",
        "select id from Accounts where id is not null limit 2001",
        "select Nope from Accounts where id is not null",
        "select id from Accounts where id = = 3",
    ] {
        let (_, e) = org.coql(bad).await;
        checked.push(("coql.json", "/crm/v8/coql", "post", "400", e));
    }

    let dach = territory_id_of(&territories, "DACH");
    let assign = "/crm/v8/{module_api_name}/actions/assign_territories";
    let remove = "/crm/v8/{module_api_name}/actions/remove_territories";
    let body = |ids: &[&str]| json!({"data": ids.iter().map(|id| json!({"id": id, "Territories": [{"id": dach}]})).collect::<Vec<_>>()});
    let (empty_id, _) = find_account(&native, |l| l.is_empty()).await;
    let (_, assigned) = native
        .post(
            "/crm/v8/Accounts/actions/assign_territories",
            body(&[&empty_id, &empty_id, "1"]),
        )
        .await;
    checked.push(("record.json", assign, "post", "200", assigned));
    let (_, removed) = native
        .post(
            "/crm/v8/Accounts/actions/remove_territories",
            body(&[&empty_id, &empty_id]),
        )
        .await;
    checked.push(("record.json", remove, "post", "200", removed));

    let (_, read) = org
        .post(
            "/crm/bulk/v8/read",
            json!({"query": {"module": {"api_name": "Accounts"}, "fields": ["Account_Name"]}}),
        )
        .await;
    checked.push(("bulk_read.json", "/crm/bulk/v8/read", "post", "201", read));

    let mut failures = Vec::new();
    for (file, path, method, status, body) in &checked {
        for e in oas.errors(file, path, method, status, body) {
            failures.push(format!(
                "{method} {path} {status} ({file}): {e}\n  body: {body}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn heavy_calls_share_a_sub_concurrency_pool_of_ten() {
    let org = Org::start(SandboxConfig {
        faults: Faults {
            latency_ms: 500,
            ..Faults::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let queries =
        (0..15).map(|_| org.coql("select id from Accounts where id is not null limit 10"));
    let results = futures_util::future::join_all(queries).await;
    let refused = results
        .iter()
        .filter(|r| r.0 == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(refused >= 1, "15 COQL calls at once, 10 allowed");
    assert!(results.iter().filter(|r| r.0 == StatusCode::OK).count() >= 10);
    let light = (0..15).map(|_| org.get("/crm/v8/settings/territories"));
    let results = futures_util::future::join_all(light).await;
    assert!(
        results.iter().all(|r| r.0 == StatusCode::OK),
        "15 light calls fit in 20"
    );
    let writes = (0..12).map(|_| {
        let eleven: Vec<Value> = (0..11).map(|i| json!({"id": account_id(i)})).collect();
        org.put("/crm/v8/Accounts", json!({ "data": eleven }))
    });
    let results = futures_util::future::join_all(writes).await;
    let refused = results
        .iter()
        .filter(|r| r.0 == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(refused >= 1, "writes of more than 10 records are heavy");
}

#[tokio::test]
async fn territories_cannot_be_written_with_a_plain_update() {
    let org = native().await;
    let (status, body) = org
        .put(
            "/crm/v8/Accounts",
            json!({"data": [{"id": FIRST, "Territories": [{"id": "5725767000000200010"}]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["data"][0]["code"], "INVALID_DATA");
    assert_eq!(body["data"][0]["details"]["api_name"], "Territories");
}

#[tokio::test]
async fn if_modified_since_lists_only_changed_records() {
    let org = Org::demo().await;
    let since = httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(5));
    let list = |since: String| {
        let req = org
            .auth(org.http.get(org.url("/crm/v8/Accounts?fields=Territory")))
            .header("If-Modified-Since", since);
        async move { split(req.send().await.unwrap()).await }
    };
    assert_eq!(list(since.clone()).await.0, StatusCode::NOT_MODIFIED);
    org.put(
        "/crm/v8/Accounts",
        json!({"data": [{"id": account_id(5), "Territory": "Japan"}]}),
    )
    .await;
    let (status, body) = list(since).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["id"], account_id(5));
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_zoho_errors() {
    let org = Org::demo().await;
    assert_error(
        &org.get("/crm/v8/settings/layouts").await,
        404,
        "INVALID_URL_PATTERN",
    );
    assert_error(
        &org.get("/crm/v2/Accounts").await,
        404,
        "INVALID_URL_PATTERN",
    );
    let deleted = split(
        org.auth(org.http.delete(org.url("/crm/v8/Accounts")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&deleted, 400, "INVALID_REQUEST_METHOD");
    let garbled = split(
        org.auth(org.http.put(org.url("/crm/v8/Accounts")))
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&garbled, 400, "INVALID_DATA");
    let stats = org.sandbox.stats().await;
    assert_eq!(stats.by_status["404"], 2);
}

#[tokio::test]
async fn page_tokens_stop_at_the_100000th_record() {
    let org = Org::start(SandboxConfig {
        seed: Seed::Large { accounts: 100_500 },
        ..SandboxConfig::default()
    })
    .await;
    let mut path = "/crm/v8/Accounts?fields=id&sort_order=asc".to_string();
    let mut seen = 0;
    loop {
        let (status, body) = org.get(&path).await;
        if status == StatusCode::BAD_REQUEST {
            assert_error(&(status, body.clone()), 400, "PAGINATION_LIMIT_EXCEEDED");
            assert_eq!(body["details"]["param_name"], "page_token");
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        seen += body["data"].as_array().unwrap().len();
        let token = body["info"]["next_page_token"]
            .as_str()
            .expect("more to read");
        path = format!("/crm/v8/Accounts?fields=id&sort_order=asc&page_token={token}");
    }
    assert_eq!(seen, 100_000);
}

#[tokio::test]
async fn state_file_is_written_while_running_not_only_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let org = Org::start(SandboxConfig {
        state_file: Some(path.clone()),
        ..SandboxConfig::default()
    })
    .await;
    let (status, _) = org
        .put(
            "/crm/v8/Accounts",
            json!({"data": [{"id": account_id(33), "Territory": "Nordics"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut written = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains(&account_id(33)) && text.contains("Nordics") {
            written = true;
            break;
        }
    }
    assert!(
        written,
        "the change reached the state file without a shutdown"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "state.json")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[tokio::test]
async fn wrong_refresh_token_is_invalid_code() {
    let org = Org::demo().await;
    let body: Value = org
        .http
        .post(org.url("/oauth/v2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", sandbox::CLIENT_ID),
            ("client_secret", sandbox::CLIENT_SECRET),
            ("refresh_token", "1000.stale"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body, json!({"error": "invalid_code"}));
}
