//! Resolves the CLI, the environment and realign.yaml into one Settings value.
