//! The embedded Zoho CRM v8-compatible server.
