//! realign's integration tests: one binary, a shared harness in `util`.

mod util;

mod cli;
mod client;
mod examples;
mod native;
mod sandbox;
mod watch;
