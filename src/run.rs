//! Dispatches a parsed command to the operation that carries it out.
