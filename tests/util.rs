//! Shared test harness: starts the sandbox on 127.0.0.1:0 and runs the real binary.
#![allow(dead_code)]
