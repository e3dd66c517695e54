//! The Zoho CRM client: auth, http, pacing and retry, endpoints.
