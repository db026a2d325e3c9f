//! API keys that Palisade issued to client applications: read from the header each
//! `api_key` method of the fronted API names, looked up by digest in the bundle in force
//! (expiry checked at the request, so a rotated key stops at its instant even without a
//! newer bundle), and never passed on to the upstream, which has no use for them.

use crate::authn::AuthResult;
use http::{HeaderMap, HeaderName};
use policy::VerifiedCredential;
use policy::credentials::Credentials;
use std::sync::Arc;
use store::protection::AuthMethod;

/// Issued keys are 50-odd characters; anything much longer is refused unread.
const MAX_KEY_BYTES: usize = 512;

/// The distinct headers the API-key methods of `api` read, in the order first declared.
pub fn headers_of(policy: &policy::CompiledPolicy, api: i64) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = Vec::new();
    for method in policy.auth_methods(api) {
        if let AuthMethod::ApiKey { header } = method {
            match HeaderName::from_bytes(header.trim().as_bytes()) {
                Ok(name) if !names.contains(&name) => names.push(name),
                Ok(_) => {}
                Err(_) => tracing::warn!(
                    header,
                    "an API-key method names a header that cannot exist; skipped"
                ),
            }
        }
    }
    names
}

/// The API key a request presents in one of `names`, checked against `credentials`;
/// `None` when it presents none (other methods are tried then).
pub fn authenticate(
    headers: &HeaderMap,
    names: &[HeaderName],
    credentials: &Credentials,
    now_millis: i64,
) -> Option<AuthResult> {
    let mut presented = names.iter().flat_map(|name| headers.get_all(name).iter());
    let value = presented.next()?;
    if presented.next().is_some() {
        // Two keys: which one the upstream's own logic might read is anyone's guess.
        return Some(AuthResult::Refused("more than one API key".into()));
    }
    let Some(key) = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| !key.is_empty() && key.len() <= MAX_KEY_BYTES)
    else {
        return Some(AuthResult::Refused("a malformed API key".into()));
    };
    Some(match credentials.api_key(key, now_millis) {
        None => AuthResult::Refused("an unknown, revoked or expired API key".into()),
        Some(issued) => AuthResult::Verified(Arc::new(VerifiedCredential {
            method: "api_key".into(),
            client_app: Some(issued.client_app),
            // The instance holding the key is who calls.
            subject: Some(issued.instance.clone()),
            ..VerifiedCredential::default()
        })),
    })
}

/// Removes every API key header before the request goes upstream.
pub fn strip(headers: &mut HeaderMap, names: &[HeaderName]) {
    for name in names {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use policy::credentials::{IssuedKey, digest};
    use std::collections::BTreeMap;

    fn credentials() -> Credentials {
        let issued = |expires_at| IssuedKey {
            client_app: 4,
            credential_id: 1,
            instance: "orders-1".into(),
            prefix: "pak_live".into(),
            expires_at,
            secret_sha256: None,
        };
        Credentials {
            api_keys: BTreeMap::from([
                (digest("pak_live"), issued(None)),
                (digest("pak_old"), issued(Some(1_000))),
            ]),
            ..Credentials::default()
        }
    }

    fn check(values: &[(&'static str, &str)], now: i64) -> Option<AuthResult> {
        let mut headers = HeaderMap::new();
        for (name, value) in values {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        let names = [
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-other-key"),
        ];
        authenticate(&headers, &names, &credentials(), now)
    }

    #[test]
    fn a_known_key_names_its_client_application_and_instance() {
        let Some(AuthResult::Verified(credential)) = check(&[("x-api-key", " pak_live ")], 0)
        else {
            panic!("not verified")
        };
        assert_eq!(
            (
                credential.method.as_str(),
                credential.client_app,
                credential.subject.as_deref()
            ),
            ("api_key", Some(4), Some("orders-1"))
        );
        assert!(
            matches!(
                check(&[("x-other-key", "pak_live")], 0),
                Some(AuthResult::Verified(_))
            ),
            "any declared header"
        );
    }

    #[test]
    fn unknown_expired_doubled_and_malformed_keys_are_refused() {
        let refused = |result: Option<AuthResult>| matches!(result, Some(AuthResult::Refused(_)));
        assert!(refused(check(&[("x-api-key", "pak_guess")], 0)));
        assert!(
            matches!(
                check(&[("x-api-key", "pak_old")], 999),
                Some(AuthResult::Verified(_))
            ),
            "inside the overlap"
        );
        assert!(
            refused(check(&[("x-api-key", "pak_old")], 1_000)),
            "past the overlap"
        );
        assert!(refused(check(
            &[("x-api-key", "pak_live"), ("x-api-key", "pak_guess")],
            0
        )));
        assert!(refused(check(
            &[("x-api-key", "pak_live"), ("x-other-key", "pak_live")],
            0
        )));
        assert!(refused(check(&[("x-api-key", "  ")], 0)));
        assert!(refused(check(
            &[("x-api-key", &"k".repeat(MAX_KEY_BYTES + 1))],
            0
        )));
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_bytes(b"pak_\xff").unwrap());
        assert!(refused(authenticate(
            &headers,
            &[HeaderName::from_static("x-api-key")],
            &credentials(),
            0
        )));
        assert_eq!(
            check(&[("authorization", "Bearer x")], 0),
            None,
            "no key: other methods are tried"
        );
    }

    #[test]
    fn keys_are_stripped_before_going_upstream() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("pak_live"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        strip(&mut headers, &[HeaderName::from_static("x-api-key")]);
        assert!(headers.get("x-api-key").is_none());
        assert!(headers.get("accept").is_some());
    }
}
