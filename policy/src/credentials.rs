//! Client credentials as bundles carry them, so agents authenticate callers without asking
//! the control plane: API keys by the SHA-256 of the key (the key itself is shown once to
//! its holder and kept nowhere), HMAC keys by their key id and the SHA-256 of their secret.
//! Keys and secrets are high-entropy random strings, so a plain digest cannot be reversed;
//! a leaked bundle gives no usable credential. An agent fetches HMAC secrets over its own
//! signed channel and takes only those whose digest the signed bundle names. mTLS
//! credentials are certificate identities, which are no secret.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Every credential an agent may accept, as of the snapshot the bundle was compiled from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Hex SHA-256 of the key → whose it is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub api_keys: BTreeMap<String, IssuedKey>,
    /// HMAC key id (`phk_…`, which callers name in their signatures) → whose it is, with
    /// the hex SHA-256 of its secret in `IssuedKey::secret_sha256`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hmac_keys: BTreeMap<String, IssuedKey>,
    /// Client-certificate identity (`spiffe://acme/orders`, `CN=orders,O=Acme`) → whose it
    /// is; `IssuedKey::prefix` repeats the identity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mtls_identities: BTreeMap<String, IssuedKey>,
}

/// One instance's credential of one client application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedKey {
    pub client_app: i64,
    pub credential_id: i64,
    /// Which instance of the caller holds it, for decision logs.
    pub instance: String,
    /// The key's first characters as shown in the dashboard (`pak_3kF9…`), for the diff.
    pub prefix: String,
    /// Unix milliseconds; a rotated key keeps working until then, and agents stop
    /// accepting it then even if no newer bundle has arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// For an HMAC key: the hex SHA-256 of its secret, which pins the secret an agent is
    /// handed to this signed bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_sha256: Option<String>,
}

impl IssuedKey {
    /// Whether it still works at `now_millis`.
    pub fn is_live(&self, now_millis: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now_millis)
    }
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.api_keys.is_empty() && self.hmac_keys.is_empty() && self.mtls_identities.is_empty()
    }

    /// The holder of `key`, if it is a key this bundle accepts at `now_millis`.
    pub fn api_key(&self, key: &str, now_millis: i64) -> Option<&IssuedKey> {
        self.api_keys.get(&digest(key)).filter(|issued| issued.is_live(now_millis))
    }

    /// The holder of HMAC key `key_id`, if this bundle accepts it at `now_millis`.
    pub fn hmac_key(&self, key_id: &str, now_millis: i64) -> Option<&IssuedKey> {
        self.hmac_keys.get(key_id).filter(|issued| issued.is_live(now_millis))
    }

    /// The holder of client-certificate identity `identity`, if registered and live.
    pub fn mtls_identity(&self, identity: &str, now_millis: i64) -> Option<&IssuedKey> {
        self.mtls_identities.get(identity).filter(|issued| issued.is_live(now_millis))
    }

    /// One line per credential, for the publish diff.
    pub fn describe(&self, client_apps: &BTreeMap<i64, String>) -> BTreeMap<String, String> {
        let line = |kind: &str, shown: &str, key: &IssuedKey| {
            let app = client_apps.get(&key.client_app).map_or_else(|| format!("client application {}", key.client_app), Clone::clone);
            let name = format!("{kind} {shown} of {app} ({})", key.instance);
            let state = key.expires_at.map_or_else(String::new, |at| format!("expires {}", rfc3339(at)));
            (name, state)
        };
        let api_keys = self.api_keys.values().map(|key| line("API key", &format!("{}…", key.prefix), key));
        let hmac_keys = self.hmac_keys.iter().map(|(key_id, key)| line("HMAC key", key_id, key));
        let identities = self.mtls_identities.iter().map(|(identity, key)| line("mTLS identity", identity, key));
        api_keys.chain(hmac_keys).chain(identities).collect()
    }
}

/// Unix milliseconds as an RFC 3339 UTC time, for people.
fn rfc3339(millis: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{millis} ms"))
}

/// The hex SHA-256 a key is looked up by; the control plane stores the same digest.
pub fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `text` is the shape of a digest (64 lower-case hex digits).
pub fn is_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(expires_at: Option<i64>) -> Credentials {
        let key = IssuedKey { client_app: 3, credential_id: 9, instance: "orders-1".into(), prefix: "pak_abcdefgh".into(), expires_at, secret_sha256: None };
        Credentials { api_keys: BTreeMap::from([(digest("pak_secret"), key)]), ..Credentials::default() }
    }

    #[test]
    fn a_key_is_found_by_its_digest_until_it_expires() {
        let live = credentials(None);
        assert_eq!(live.api_key("pak_secret", 0).map(|k| k.client_app), Some(3));
        assert!(live.api_key("pak_secreT", 0).is_none());
        assert!(live.api_key("", 0).is_none());
        let rotated = credentials(Some(1_000));
        assert!(rotated.api_key("pak_secret", 999).is_some());
        assert!(rotated.api_key("pak_secret", 1_000).is_none(), "expired at its instant");
    }

    #[test]
    fn digests_are_recognised() {
        assert!(is_digest(&digest("x")));
        assert!(!is_digest("ABC"));
        assert!(!is_digest(&digest("x").to_uppercase()));
    }
}
