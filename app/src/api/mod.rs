//! Server functions: the browser's only way to read and change data. Each one opens with
//! its permission check (stated in its doc comment), then validates, then calls the data
//! layer. All live under `/rpc/` with fixed names, so client and server always agree.

pub mod account;
pub mod agents;
pub mod audit;
pub mod clients;
pub mod inventory;
pub mod policies;
pub mod protection;
pub mod admin;
pub mod setup;
pub mod sso;

/// Empty form fields mean "not given".
#[cfg(feature = "ssr")]
pub(crate) fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}
