//! The Zoho CRM client: auth (OAuth refresh, token cache), http (one call with pacing
//! and retry), endpoints (COQL reads, record updates), and the data-centre host table.
//!
//! This module is written from the API reference alone; it shares no wire-format code
//! with the sandbox, so a misreading shows up as a failing test.

pub mod auth;
pub mod error;
pub mod hosts;
pub mod http;
pub mod pacing;
pub mod ratelimit;
pub mod records;
pub mod retry;

pub use auth::{Connection, Secret};
pub use error::ZohoError;
pub use http::{Client, ClientStats};
