//! Client errors, each carrying what a caller needs to act: Zoho's code and status,
//! the likely cause, and when to retry.

#[derive(Debug, thiserror::Error)]
pub enum ZohoError {
    /// Credentials were refused; retrying cannot help.
    #[error("{message}")]
    Auth { message: String },
    /// The token endpoint is throttling this refresh token.
    #[error("the Zoho token endpoint is throttling this refresh token ({detail}): Zoho allows 10 new access tokens per refresh token per 10 minutes; wait 10 minutes and run again")]
    TokenThrottled { detail: String },
    /// A whole-request error from the API.
    #[error("Zoho answered HTTP {status} `{code}` to {what}: {message}")]
    Api {
        what: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The answer did not have the shape Zoho documents.
    #[error("Zoho answered {what} with something realign cannot read ({detail}); nothing was assumed from it")]
    Garbage { what: String, detail: String },
    /// Retries ran out (attempts, budget or deadline) on a transient failure.
    #[error("gave up on {what} after {attempts} attempts: {last}")]
    GaveUp {
        what: String,
        attempts: u32,
        last: String,
    },
    /// Zoho asked to wait longer than realign will.
    #[error("Zoho asked realign to wait {seconds} s before {what}, longer than the {cap} s cap: run again after {retry_at}")]
    WaitTooLong {
        what: String,
        seconds: u64,
        cap: u64,
        retry_at: String,
    },
    #[error("{0}")]
    Config(String),
}
