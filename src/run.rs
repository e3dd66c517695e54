//! Dispatches a parsed command to the operation that carries it out.

use crate::cli::Cli;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Error = 1,
    Changes = 2,
    Partial = 3,
}

pub async fn run(_cli: Cli) -> anyhow::Result<Exit> {
    anyhow::bail!("not wired yet")
}
