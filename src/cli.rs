//! Command-line definitions (clap derive): data only.
