//! Palisade's control-plane server: configuration, startup, the axum router (dashboard,
//! REST API), sign-in and sessions, and the admin command line.

pub mod agent_api;
pub mod api;
pub mod audit_checkpointer;
pub mod audit_download;
pub mod audit_export;
pub mod audit_webhook;
pub mod auth;
pub mod cli;
pub mod config;
pub mod health;
pub mod oidc;
pub mod outage;
pub mod policy_cli;
pub mod router;
pub mod security;
pub mod startup;

pub use router::router;
