//! `AppError`, the one error server functions return: safe to show in the browser (never
//! database text), with the HTTP status it stands for.

use serde::{Deserialize, Serialize};
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("Your session has ended. Sign in again.")]
    Unauthenticated,
    #[error("You do not have permission to do this.")]
    Forbidden,
    /// A sensitive action and a sign-in older than the recent-authentication window.
    #[error("Confirm it is you: sign in again to do this (your last sign-in is over {0} minutes old).")]
    Reauthenticate(u64),
    #[error("{0} not found.")]
    NotFound(String),
    /// Bad input: `field` names the form field the message belongs next to.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("That {0} is already taken.")]
    Conflict(String),
    #[error("Something went wrong on our side. Try again; if it keeps happening, tell your administrator.")]
    Internal,
    /// The request itself could not be read or sent (network, encoding).
    #[error("The request failed: {0}")]
    Request(String),
}

impl AppError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        AppError::Invalid { field: field.to_owned(), message: message.into() }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Unauthenticated => 401,
            AppError::Forbidden | AppError::Reauthenticate(_) => 403,
            AppError::NotFound(_) => 404,
            AppError::Invalid { .. } | AppError::Request(_) => 400,
            AppError::Conflict(_) => 409,
            AppError::Internal => 500,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Request(value.to_string())
    }
}

#[cfg(feature = "ssr")]
impl From<store::StoreError> for AppError {
    fn from(error: store::StoreError) -> Self {
        use store::StoreError;
        match error {
            StoreError::NotFound(what) => {
                let mut what = what.to_owned();
                if let Some(first) = what.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                AppError::NotFound(what)
            }
            StoreError::Conflict { field } => AppError::Conflict(field.to_owned()),
            StoreError::Invalid { field, message } => AppError::invalid(field, message),
            StoreError::Settings(problems) => {
                let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
                AppError::invalid("settings", listed.join("; "))
            }
            internal => {
                tracing::error!(error = %internal, "server function failed");
                AppError::Internal
            }
        }
    }
}
