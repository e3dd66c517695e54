//! Executes a plan through the Zoho client, batch by batch.
