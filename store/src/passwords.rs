//! Password policy and argon2id hashing, run on blocking threads with concurrency bounded
//! to the core count so that a burst of logins cannot stall the async runtime.

use crate::StoreError;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use std::sync::Arc;
use tokio::sync::Semaphore;

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 128;

/// argon2id with OWASP's minimum: 19 MiB of memory, two passes, one lane.
const MEMORY_KIB: u32 = 19_456;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// Checks a new password against the length policy (counted in characters, not bytes).
pub fn validate_password(password: &str) -> Result<(), StoreError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(StoreError::invalid(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(StoreError::invalid(
            "password",
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Hashes and verifies passwords off the async runtime.
#[derive(Clone, Debug)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// A real hash of a random password: verifying against it when an email is unknown
    /// costs the same as a wrong password, so timing does not reveal which accounts exist.
    decoy_hash: Arc<str>,
}

impl Passwords {
    pub fn new() -> Result<Self, StoreError> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let decoy = SaltString::generate(&mut OsRng);
        let decoy_hash = hash_blocking(decoy.as_str())?;
        Ok(Passwords { permits: Arc::new(Semaphore::new(cores)), decoy_hash: decoy_hash.into() })
    }

    /// Validates the policy, then hashes.
    pub async fn hash(&self, password: &str) -> Result<String, StoreError> {
        validate_password(password)?;
        let password = password.to_owned();
        self.run_blocking(move || hash_blocking(&password)).await?
    }

    /// Verifies `password` against `stored`, or against the decoy when there is no stored
    /// hash (unknown account, or an invited user without a password): always one argon2 run.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, StoreError> {
        let (hash, real) = match stored {
            Some(hash) => (hash.to_owned(), true),
            None => (self.decoy_hash.to_string(), false),
        };
        // Over-long input is refused after the same work, not before it.
        let password = password.chars().take(MAX_PASSWORD_CHARS + 1).collect::<String>();
        let matches = self.run_blocking(move || verify_blocking(&password, &hash)).await??;
        Ok(real && matches)
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Hashing("hasher shut down".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|error| StoreError::Hashing(error.to_string()))
    }
}

fn argon2id() -> Argon2<'static> {
    // These constant parameters are within argon2's bounds, so this cannot fail.
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2id()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| StoreError::Hashing(error.to_string()))
}

fn verify_blocking(password: &str, stored: &str) -> Result<bool, StoreError> {
    let parsed =
        PasswordHash::new(stored).map_err(|error| StoreError::Hashing(error.to_string()))?;
    // Parameters come from the stored hash, so older hashes keep verifying after a change.
    Ok(argon2id().verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_policy_counts_characters() {
        assert!(validate_password("short").is_err());
        assert!(validate_password(&"a".repeat(11)).is_err());
        assert!(validate_password(&"a".repeat(12)).is_ok());
        assert!(validate_password(&"é".repeat(12)).is_ok(), "24 bytes but 12 characters");
        assert!(validate_password(&"a".repeat(128)).is_ok());
        assert!(validate_password(&"a".repeat(129)).is_err());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_with_the_required_cost() {
        let passwords = Passwords::new().unwrap();
        let hash = passwords.hash("correct horse battery").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(passwords.verify("correct horse battery", Some(&hash)).await.unwrap());
        assert!(!passwords.verify("correct horse batterY", Some(&hash)).await.unwrap());
        assert!(!passwords.verify("correct horse battery", None).await.unwrap());
        let again = passwords.hash("correct horse battery").await.unwrap();
        assert_ne!(hash, again, "every hash has its own salt");
    }

    #[tokio::test]
    async fn garbage_input_is_an_error_not_a_panic() {
        let passwords = Passwords::new().unwrap();
        assert!(passwords.verify("whatever password", Some("not a phc string")).await.is_err());
        assert!(passwords.hash("").await.is_err());
        let huge = "x".repeat(1 << 20);
        assert!(!passwords.verify(&huge, None).await.unwrap());
    }
}
