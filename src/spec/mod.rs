//! The desired state: spec types, loading with file:line:col errors, validation, rule matching.
