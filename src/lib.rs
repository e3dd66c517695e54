//! realign keeps a Zoho CRM org's territory assignments equal to what a git
//! repository declares.
//!
//! The crate is a functional core inside an imperative shell:
//!
//! - [`spec`] loads and validates the desired state from YAML (pure).
//! - [`plan`] diffs org state against the spec, prices the result and renders it (pure).
//! - [`zoho`] is the client: OAuth, HTTP, pacing and retry, endpoints (IO).
//! - [`apply`] executes a plan batch by batch through the client, journaled (IO).
//! - [`sandbox`] is the embedded Zoho-compatible server the CLI and the tests run (IO).
//! - [`watch`] is the continuous mode: file events, periodic resync and backoff around
//!   reconcile passes (IO).
//! - [`session`] connects to one org for a run; [`reconcile`] holds the steps of a pass
//!   (read, plan, apply, read back) that `plan`, `apply`, `demo` and `watch` share.
//! - [`import`] writes a spec from the org's current state (pure).
//! - [`settings`] merges the CLI, the environment and `realign.yaml` into one value.
//! - [`cli`] holds the clap definitions and [`run`] dispatches a parsed command.

pub mod apply;
pub mod cli;
pub mod edition;
pub mod import;
pub mod plan;
pub mod reconcile;
pub mod run;
pub mod sandbox;
pub mod session;
pub mod settings;
pub mod spec;
pub mod watch;
pub mod zoho;

/// Set when logs are JSON (`--log-format json`): people's messages then go out as log
/// events too, so a log collector reads one format.
pub static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A message for the person running realign, on stderr: a plain line, or an info event
/// when logs are JSON.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        if $crate::JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::info!("{}", format!($($arg)*));
        } else {
            eprintln!($($arg)*);
        }
    };
}
