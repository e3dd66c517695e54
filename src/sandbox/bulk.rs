//! Bulk Write and Bulk Read: uploaded zipped CSVs, jobs that progress in the background,
//! and zipped CSV results.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::Value;

use super::routes::App;

/// Uploaded files and jobs.
#[derive(Default)]
pub struct Bulk {}

macro_rules! not_yet {
    ($($name:ident($($arg:ident: $t:ty),*)),*) => {
        $(pub(crate) fn $name(_app: &Arc<App>, $($arg: $t),*) -> super::routes::Answer {
            $(let _ = $arg;)*
            super::routes::Answer::not_found()
        })*
    };
}

not_yet!(
    upload(headers: &HeaderMap, body: &Bytes),
    create_write(body: Value),
    write_status(id: &str),
    write_result(id: &str),
    create_read(body: Value),
    read_status(id: &str),
    read_result(id: &str)
);
