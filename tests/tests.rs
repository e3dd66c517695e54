//! realign's integration tests: one binary, a shared harness in `util`.

mod util;

mod cli;
mod examples;
mod sandbox;
