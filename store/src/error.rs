//! The data layer's one error type: what callers can act on (not found, conflict, invalid
//! input) kept apart from what they can only log (database and migration failures).

/// A failed data-layer call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique key was violated: `field` names what the user should change.
    #[error("{field} is already taken")]
    Conflict { field: &'static str },
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// A settings document with problems, each at its path, sorted.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Settings(Vec<crate::protection::SettingProblem>),
    #[error("unsupported database URL: {0}")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// The master key in use is not the one the key was sealed with.
    #[error(
        "the {purpose} signing key {key_id} cannot be unsealed with this master key; restore the \
         master key it was sealed with, or rotate to a new signing key (old signatures stay verifiable)"
    )]
    Sealed { purpose: &'static str, key_id: String },
}

impl StoreError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        StoreError::Invalid { field, message: message.into() }
    }
}

/// Turns a unique-key violation into a [`StoreError::Conflict`] on the field the user
/// typed, and leaves every other error as it is.
pub(crate) trait ResultExt<T> {
    fn on_unique(self, field: &'static str) -> Result<T, StoreError>;
}

impl<T> ResultExt<T> for Result<T, sqlx::Error> {
    fn on_unique(self, field: &'static str) -> Result<T, StoreError> {
        self.map_err(|error| match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict { field }
            }
            _ => StoreError::Database(error),
        })
    }
}
