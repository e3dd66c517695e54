//! Sandbox conformance and limit tests.
