//! Command-line definitions (clap derive): data only. [`crate::settings`] validates
//! and merges them with the environment and `realign.yaml`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "realign",
    version,
    about = "Keep a Zoho CRM org's territory assignments equal to what a git repository declares",
    long_about = "Keep a Zoho CRM org's territory assignments equal to what a git repository declares.\n\n\
        With no Zoho credentials in the environment, plan and apply run against an embedded \
        sandbox org kept in .realign/sandbox-state.json. Set ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET \
        and ZOHO_REFRESH_TOKEN (and ZOHO_DC) to work on a real org."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter for stderr (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, env = "REALIGN_LOG", default_value = "info")]
    pub log: String,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole job on an in-process sandbox: plan, apply, plan again, and print the API cost.
    Demo(DemoArgs),
    /// Show the changes that would make the org equal to the spec.
    Plan(PlanArgs),
    /// Make the changes: from a spec directory (planned now) or a saved plan file.
    Apply(ApplyArgs),
    /// Keep the org equal to the spec: apply changes as they land and correct drift.
    Watch(WatchArgs),
    /// Check the spec without contacting Zoho.
    Validate(ValidateArgs),
    /// Say why a record is (or would be) in its territory.
    Explain(ExplainArgs),
    /// Write a spec from the org's current state.
    Import(ImportArgs),
    /// Write (or check) the JSON Schemas of realign's files.
    Schema(SchemaArgs),
    /// Run the Zoho-compatible sandbox server.
    Sandbox(SandboxArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The spec directory.
    #[arg(default_value = "territories")]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Markdown,
    Json,
    /// One line of JSON with the summary and cost only.
    Summary,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The spec directory.
    #[arg(default_value = "territories")]
    pub dir: PathBuf,
    /// Also write the plan as JSON to this file, for `realign apply FILE`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Exit 2 when the plan has changes, 0 when it has none.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A spec directory, or a plan file written by `realign plan --out`.
    #[arg(default_value = "territories")]
    pub target: PathBuf,
    /// Apply without asking for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Apply even when the plan exceeds the guardrails in realign.yaml.
    #[arg(long)]
    pub allow_large_change: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Drift {
    Heal,
    Report,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The spec directory (it may be a symlink that is swapped as a whole).
    #[arg(default_value = "territories")]
    pub dir: PathBuf,
    /// Full resync period, e.g. `5m`, `30s`: a plan against the org that finds hand edits.
    #[arg(long, default_value = "5m")]
    pub interval: String,
    /// Records changed in Zoho by hand: `heal` writes the spec back, `report` logs them.
    #[arg(long, value_enum, default_value_t = Drift::Heal)]
    pub drift: Drift,
    /// Quiet time after a file event before the spec is reloaded, e.g. `500ms`.
    #[arg(long, default_value = "500ms")]
    pub debounce: String,
    /// Run `git pull --ff-only` in DIR's repository before each resync.
    #[arg(long)]
    pub git_pull: bool,
    /// Serve `/healthz` and Prometheus `/metrics` here, e.g. `127.0.0.1:9464`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[arg(default_value = "territories")]
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    pub format: ValidateFormat,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The record's Zoho id.
    pub account_id: String,
    #[arg(default_value = "territories")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Where to write the spec (an empty or new directory).
    #[arg(long, default_value = "territories")]
    pub out: PathBuf,
    /// `field` (a record field holds the territory) or `native` (Territory Management).
    #[arg(long, default_value = "field")]
    pub mode: String,
    /// Field mode: the API name of the field that holds the territory.
    #[arg(long, default_value = "Territory")]
    pub field: String,
    /// Accounts, Contacts, Leads or Deals.
    #[arg(long, default_value = "Accounts")]
    pub module: String,
    /// Overwrite a directory that already holds YAML files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    #[arg(long, default_value = "schemas")]
    pub out: PathBuf,
    /// Fail when the files in --out differ from what realign generates.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on; loopback unless you say otherwise.
    #[arg(long, default_value = "127.0.0.1:8470")]
    pub listen: SocketAddr,
    /// Keep the org in this file between runs.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// The org to start with: demo, native or large.
    #[arg(long, default_value = "demo")]
    pub seed: String,
    /// Accounts in the `large` seed.
    #[arg(long)]
    pub accounts: Option<usize>,
    /// free, standard, professional, enterprise or ultimate.
    #[arg(long, default_value = "enterprise")]
    pub edition: String,
    /// `legacy` also sends X-RATELIMIT-* and Retry-After headers.
    #[arg(long, default_value = "standard")]
    pub headers: String,
    /// A JSON file of faults to inject (see docs/sandbox.md).
    #[arg(long)]
    pub faults: Option<PathBuf>,
    /// Lifetime of the access tokens it issues, in seconds (Zoho: 3600).
    #[arg(long, default_value_t = 3600)]
    pub token_ttl: u64,
    /// Answer territory assign/remove with 202 SCHEDULED and finish them later.
    #[arg(long)]
    pub schedule_territory_jobs: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
