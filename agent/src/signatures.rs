//! HMAC request signatures, as RFC 9421 (HTTP Message Signatures) writes them:
//! `Signature-Input: sig1=("@method" "@path" "content-digest");created=…;keyid="phk_…"` and
//! `Signature: sig1=:…:`. The key id must be one the bundle in force names and that has not
//! expired; its secret comes from the [`Keyring`]. A signature must cover every component
//! the API's `hmac` method lists, be created within its clock skew, and is accepted once:
//! the same signature again inside the window is a replay. A covered `Content-Digest` is
//! checked against the body before the request goes on (see `decide`).
//!
//! Components understood: `@method`, `@authority`, `@path`, `@query`, `@request-target`
//! and header fields by name. Anything else (`@target-uri`, component parameters such as
//! `;sf`) is refused rather than guessed at.

use crate::authn::AuthResult;
use crate::fsutil;
use arc_swap::ArcSwap;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use policy::VerifiedCredential;
use policy::agent_api::HmacSecrets;
use policy::credentials::{Credentials, digest};
use sfv::{Dictionary, FieldType, ListEntry, Parser};
use sha2::{Digest, Sha256, Sha512};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use store::protection::AuthMethod;

const KEYRING_FILE: &str = "hmac_keys.json";
/// Signature headers longer than this are refused unread.
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Signatures remembered against replay; past this, expired ones are dropped first, and
/// while every one is still live a new signature is refused rather than forgotten.
const REPLAY_CAPACITY: usize = 200_000;

/// One `hmac` method of the fronted API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HmacRule {
    /// `hmac-sha256` or `hmac-sha512`.
    pub algorithm: String,
    /// Lower case.
    pub signed_components: Vec<String>,
    pub clock_skew_seconds: u32,
}

/// Whether any route of `api` in `policy` takes HMAC signatures.
pub fn takes_signatures(policy: &policy::CompiledPolicy, api: i64) -> bool {
    policy.auth_methods(api).any(|method| matches!(method, AuthMethod::Hmac { .. }))
}

/// The `hmac` methods of the route `method path` of `api` in `prepared`: a signature is held
/// to the operation it calls, not to the weakest rule elsewhere in the API. Empty when no
/// route matches or the route takes no signatures.
pub fn rules_for(prepared: &policy::Prepared, api: i64, method: &str, path: &str) -> Vec<HmacRule> {
    let Ok(segments) = policy::routes::canonical_segments(path) else {
        return Vec::new();
    };
    let Some(found) = prepared.find(api, method, &segments) else {
        return Vec::new();
    };
    rules_from(
        found
            .route
            .rules
            .authentication
            .iter()
            .flat_map(|a| a.methods.iter()),
    )
}

fn rules_from<'a>(methods: impl Iterator<Item = &'a AuthMethod>) -> Vec<HmacRule> {
    let mut rules: Vec<HmacRule> = Vec::new();
    for method in methods {
        if let AuthMethod::Hmac {
            algorithm,
            signed_components,
            clock_skew_seconds,
            ..
        } = method
        {
            let rule = HmacRule {
                algorithm: algorithm.clone(),
                signed_components: signed_components
                    .iter()
                    .map(|c| c.trim().to_ascii_lowercase())
                    .collect(),
                clock_skew_seconds: *clock_skew_seconds,
            };
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        }
    }
    rules
}

/// The HMAC secrets this agent holds, by key id: only those whose SHA-256 a verified bundle
/// named, kept on disk (mode 0600) so a restart during an outage still verifies.
pub struct Keyring {
    secrets: ArcSwap<HashMap<String, Arc<Vec<u8>>>>,
    path: Option<PathBuf>,
}

impl Keyring {
    /// An empty keyring kept nowhere (tests).
    pub fn in_memory() -> Keyring {
        Keyring {
            secrets: ArcSwap::from_pointee(HashMap::new()),
            path: None,
        }
    }

    /// The keyring kept in `dir`; an unreadable file gives an empty one (the secrets are
    /// fetched again), never a start that fails.
    pub fn open(dir: &Path) -> Keyring {
        let path = dir.join(KEYRING_FILE);
        let secrets = match fsutil::read_optional(&path) {
            Ok(Some(bytes)) => match serde_json::from_slice::<HmacSecrets>(&bytes) {
                Ok(kept) => kept
                    .keys
                    .into_iter()
                    .map(|key| (key.key_id, Arc::new(key.secret.into_bytes())))
                    .collect(),
                Err(error) => {
                    tracing::warn!(%error, "the kept HMAC keys cannot be read; fetching them again");
                    HashMap::new()
                }
            },
            Ok(None) => HashMap::new(),
            Err(error) => {
                tracing::warn!(%error, "the kept HMAC keys cannot be read; fetching them again");
                HashMap::new()
            }
        };
        Keyring {
            secrets: ArcSwap::from_pointee(secrets),
            path: Some(path),
        }
    }

    pub fn secret(&self, key_id: &str) -> Option<Arc<Vec<u8>>> {
        self.secrets.load().get(key_id).cloned()
    }

    pub fn len(&self) -> usize {
        self.secrets.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `credentials` names a key whose secret is not held (or not the one named).
    pub fn lacks_any(&self, credentials: &Credentials) -> bool {
        let held = self.secrets.load();
        credentials.hmac_keys.iter().any(|(key_id, issued)| {
            let pinned = issued.secret_sha256.as_deref();
            held.get(key_id).is_none_or(|secret| {
                pinned != Some(digest(&String::from_utf8_lossy(secret)).as_str())
            })
        })
    }

    /// Keeps, of `fetched`, the secrets `credentials` names by digest (and only those),
    /// replacing what was held; returns how many. Written to disk before it is used.
    pub fn accept(&self, credentials: &Credentials, fetched: HmacSecrets) -> usize {
        let kept: Vec<_> = fetched
            .keys
            .into_iter()
            .filter(|key| {
                let pinned = credentials.hmac_keys.get(&key.key_id).and_then(|issued| issued.secret_sha256.as_deref());
                let fits = pinned == Some(digest(&key.secret).as_str());
                if !fits && credentials.hmac_keys.contains_key(&key.key_id) {
                    tracing::warn!(key_id = %key.key_id, "an HMAC secret does not match the digest the bundle names; not kept");
                }
                fits
            })
            .collect();
        if let Some(path) = &self.path {
            let document = HmacSecrets { keys: kept.clone() };
            let bytes = serde_json::to_vec(&document).unwrap_or_default();
            if let Err(error) = fsutil::write_atomic(path, &bytes, 0o600) {
                tracing::error!(%error, "cannot keep the HMAC keys on disk; holding them in memory");
            }
        }
        let count = kept.len();
        self.secrets.store(Arc::new(
            kept.into_iter()
                .map(|key| (key.key_id, Arc::new(key.secret.into_bytes())))
                .collect(),
        ));
        count
    }
}

/// Signatures already accepted, until their window closes.
pub struct ReplayGuard {
    /// SHA-256 of key id and signature → Unix seconds after which it may be forgotten.
    seen: DashMap<[u8; 32], u64>,
    capacity: usize,
    /// The Unix second expired signatures were last dropped in.
    pruned_at: AtomicU64,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::with_capacity(REPLAY_CAPACITY)
    }
}

impl ReplayGuard {
    /// A guard that remembers at most `capacity` live signatures.
    pub fn with_capacity(capacity: usize) -> ReplayGuard {
        ReplayGuard { seen: DashMap::new(), capacity, pruned_at: AtomicU64::new(0) }
    }

    /// Records `signature` until `until`; refused when it was seen already, or when the
    /// guard is full of live signatures: one it could not remember could be replayed.
    fn first_use(&self, key_id: &str, signature: &[u8], until: u64, now: u64) -> Result<(), &'static str> {
        let mut hasher = Sha256::new();
        hasher.update(key_id.as_bytes());
        hasher.update([0]);
        hasher.update(signature);
        let id: [u8; 32] = hasher.finalize().into();
        if self.seen.get(&id).is_some_and(|expires| *expires > now) {
            return Err("a replayed signature");
        }
        if self.seen.len() >= self.capacity {
            // At most once a second: a full guard must not cost a scan on every request.
            let last = self.pruned_at.load(Ordering::Relaxed);
            if last != now && self.pruned_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                self.seen.retain(|_, expires| *expires > now);
                if self.seen.len() >= self.capacity {
                    // Once a second at most, with the pruning.
                    tracing::warn!(capacity = self.capacity, "the replay guard is full of live signatures: signed requests are refused until some expire");
                }
            }
            if self.seen.len() >= self.capacity {
                return Err("too many signatures inside their window to remember another");
            }
        }
        match self.seen.entry(id) {
            Entry::Occupied(mut entry) if *entry.get() <= now => {
                entry.insert(until);
                Ok(())
            }
            Entry::Occupied(_) => Err("a replayed signature"),
            Entry::Vacant(entry) => {
                entry.insert(until);
                Ok(())
            }
        }
    }
}

/// What a request shows of itself for its signature base.
pub struct Message<'a> {
    pub method: &'a str,
    /// Path and query, as received.
    pub target: &'a str,
    pub headers: &'a HeaderMap,
}

/// A verified signature: the credential, and the `Content-Digest` the body must match
/// when the signature covers it.
pub struct Signed {
    pub credential: Arc<VerifiedCredential>,
    pub content_digest: Option<String>,
}

/// The signature a request presents, checked; `None` when it presents none (other methods
/// are tried then). `Err` is a refusal with its reason.
pub fn verify(
    message: &Message<'_>,
    rules: &[HmacRule],
    credentials: &Credentials,
    keyring: &Keyring,
    replay: &ReplayGuard,
    now_millis: i64,
) -> Option<Result<Signed, String>> {
    let input = message.headers.get("signature-input")?;
    Some(check(
        message,
        input,
        rules,
        credentials,
        keyring,
        replay,
        now_millis,
    ))
}

fn text(value: &http::HeaderValue) -> Result<&str, String> {
    value
        .to_str()
        .ok()
        .filter(|text| text.len() <= MAX_HEADER_BYTES)
        .ok_or_else(|| "a malformed signature header".to_owned())
}

fn check(
    message: &Message<'_>,
    input: &http::HeaderValue,
    rules: &[HmacRule],
    credentials: &Credentials,
    keyring: &Keyring,
    replay: &ReplayGuard,
    now_millis: i64,
) -> Result<Signed, String> {
    if message.headers.get_all("signature-input").iter().count() > 1
        || message.headers.get_all("signature").iter().count() > 1
    {
        return Err("one signature per request".into());
    }
    let inputs: Dictionary = Parser::new(text(input)?)
        .parse()
        .map_err(|_| "Signature-Input is not a structured dictionary")?;
    let signature_header = message
        .headers
        .get("signature")
        .ok_or("Signature-Input without a Signature")?;
    let signatures: Dictionary = Parser::new(text(signature_header)?)
        .parse()
        .map_err(|_| "Signature is not a structured dictionary")?;
    let [(label, ListEntry::InnerList(covered))] = inputs.iter().collect::<Vec<_>>()[..] else {
        return Err("exactly one signature, as an inner list of components".into());
    };
    let Some(ListEntry::Item(signature)) = signatures.get(label) else {
        return Err(format!("no signature labelled {label}"));
    };
    let signature = signature
        .bare_item
        .as_byte_sequence()
        .ok_or("the signature is not a byte sequence")?;

    let parameter = |name: &str| {
        covered
            .params
            .iter()
            .find(|(key, _)| key.as_str() == name)
            .map(|(_, value)| value)
    };
    let key_id = parameter("keyid")
        .and_then(|v| v.as_string())
        .map(|s| s.as_str().to_owned())
        .ok_or("the signature names no keyid")?;
    let created = parameter("created")
        .and_then(|v| v.as_integer())
        .map(i64::from)
        .ok_or("the signature has no created time")?;
    let alg = parameter("alg")
        .and_then(|v| v.as_string())
        .map(|s| s.as_str().to_owned());

    let issued = credentials
        .hmac_key(&key_id, now_millis)
        .ok_or("an unknown, revoked or expired HMAC key")?;
    let rule = match &alg {
        Some(alg) => rules
            .iter()
            .find(|rule| rule.algorithm == *alg)
            .ok_or("an algorithm this API does not accept")?,
        None => rules.first().ok_or("this API takes no HMAC signatures")?,
    };
    let components: Vec<String> = covered
        .items
        .iter()
        .map(|item| {
            if !item.params.is_empty() {
                return Err("component parameters are not supported".to_owned());
            }
            item.bare_item
                .as_string()
                .map(|name| name.as_str().to_ascii_lowercase())
                .ok_or_else(|| "a component is not a string".to_owned())
        })
        .collect::<Result<_, _>>()?;
    if let Some(missing) = rule
        .signed_components
        .iter()
        .find(|wanted| !components.contains(wanted))
    {
        return Err(format!("the signature does not cover {missing}"));
    }
    let now = now_millis.div_euclid(1000);
    let skew = i64::from(rule.clock_skew_seconds.max(1));
    if (now - created).abs() > skew {
        return Err("the signature was not created within the allowed clock skew".into());
    }
    if let Some(expires) = parameter("expires")
        .and_then(|v| v.as_integer())
        .map(i64::from)
        && expires <= now
    {
        return Err("the signature has expired".into());
    }

    let secret = keyring
        .secret(&key_id)
        .ok_or("the HMAC key is not held here yet")?;
    let base = signature_base(message, &components, label, covered)?;
    let valid = match rule.algorithm.as_str() {
        "hmac-sha256" => verify_mac::<Hmac<Sha256>>(&secret, base.as_bytes(), signature),
        "hmac-sha512" => verify_mac::<Hmac<Sha512>>(&secret, base.as_bytes(), signature),
        _ => false,
    };
    if !valid {
        return Err("the signature does not verify".into());
    }
    let until = u64::try_from(created + skew)
        .unwrap_or(0)
        .max(u64::try_from(now).unwrap_or(0) + 1);
    replay.first_use(&key_id, signature, until, u64::try_from(now).unwrap_or(0))?;
    let content_digest = components.iter().any(|c| c == "content-digest").then(|| {
        message
            .headers
            .get("content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    });
    Ok(Signed {
        credential: Arc::new(VerifiedCredential {
            method: "hmac".into(),
            client_app: Some(issued.client_app),
            subject: Some(issued.instance.clone()),
            ..VerifiedCredential::default()
        }),
        content_digest,
    })
}

fn verify_mac<M: Mac + hmac::digest::KeyInit>(
    secret: &[u8],
    base: &[u8],
    signature: &[u8],
) -> bool {
    let Ok(mut mac) = <M as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(base);
    mac.verify_slice(signature).is_ok()
}

/// The text RFC 9421 signs: one line per covered component, then `@signature-params`.
fn signature_base(
    message: &Message<'_>,
    components: &[String],
    label: &sfv::Key,
    covered: &sfv::InnerList,
) -> Result<String, String> {
    let (path, query) = match message.target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (message.target, None),
    };
    let mut base = String::new();
    for component in components {
        let value = match component.as_str() {
            "@method" => message.method.to_ascii_uppercase(),
            "@authority" => message
                .headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_ascii_lowercase)
                .ok_or("@authority is covered but the request has no Host")?,
            "@path" => path.to_owned(),
            "@query" => format!("?{}", query.unwrap_or_default()),
            "@request-target" => message.target.to_owned(),
            derived if derived.starts_with('@') => {
                return Err(format!("the component {derived} is not supported"));
            }
            field => {
                let values: Vec<&str> = message
                    .headers
                    .get_all(field)
                    .iter()
                    .map(|v| {
                        v.to_str()
                            .map(str::trim)
                            .map_err(|_| format!("the header {field} is not text"))
                    })
                    .collect::<Result<_, _>>()?;
                if values.is_empty() {
                    return Err(format!(
                        "the signature covers {field}, which the request does not carry"
                    ));
                }
                values.join(", ")
            }
        };
        base.push_str(&format!("\"{component}\": {value}\n"));
    }
    let mut params = Dictionary::new();
    params.insert(label.clone(), ListEntry::InnerList(covered.clone()));
    let serialized = params
        .serialize()
        .ok_or("the signature parameters cannot be serialised")?;
    let inner = serialized
        .strip_prefix(&format!("{}=", label.as_str()))
        .ok_or("the signature parameters cannot be serialised")?;
    base.push_str(&format!("\"@signature-params\": {inner}"));
    Ok(base)
}

/// Whether `body` matches a `Content-Digest` value (RFC 9530): every digest given in an
/// algorithm known here (`sha-256`, `sha-512`) must match, and at least one must be given.
pub fn content_digest_matches(header: &str, body: &[u8]) -> bool {
    let Ok(digests) = Parser::new(header).parse::<Dictionary>() else {
        return false;
    };
    let mut checked = false;
    for (algorithm, entry) in &digests {
        let ListEntry::Item(item) = entry else {
            return false;
        };
        let Some(given) = item.bare_item.as_byte_sequence() else {
            return false;
        };
        let expected: Vec<u8> = match algorithm.as_str() {
            "sha-256" => Sha256::digest(body).to_vec(),
            "sha-512" => Sha512::digest(body).to_vec(),
            _ => continue,
        };
        if given != expected.as_slice() {
            return false;
        }
        checked = true;
    }
    checked
}

/// Turns a verification outcome into what authentication found.
pub fn auth_result(outcome: &Result<Signed, String>) -> AuthResult {
    match outcome {
        Ok(signed) => AuthResult::Verified(signed.credential.clone()),
        Err(reason) => AuthResult::Refused(reason.clone()),
    }
}

/// The `Signature-Input` and `Signature` values an `hmac-sha256` signature over
/// `components` of `message` has, as a caller would send them (label `sig1`). For callers
/// written in Rust and for tests; the unit tests check the base against one built by hand.
pub fn sign(
    message: &Message<'_>,
    components: &[&str],
    created: i64,
    key_id: &str,
    secret: &[u8],
) -> Result<(String, String), String> {
    let list = components
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(" ");
    let input = format!("sig1=({list});created={created};keyid=\"{key_id}\"");
    let inputs: Dictionary = Parser::new(&input)
        .parse()
        .map_err(|_| "the components cannot be written as a signature input")?;
    let Some((label, ListEntry::InnerList(covered))) = inputs.iter().next() else {
        return Err("no signature input".into());
    };
    let names: Vec<String> = components.iter().map(|c| c.to_ascii_lowercase()).collect();
    let base = signature_base(message, &names, label, covered)?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|_| "unusable secret")?;
    mac.update(base.as_bytes());
    Ok((
        input,
        format!("sig1={}", byte_sequence(&mac.finalize().into_bytes())),
    ))
}

/// `bytes` as an RFC 8941 byte sequence (`:base64:`), for callers building signatures.
pub fn byte_sequence(bytes: &[u8]) -> String {
    sfv::ItemSerializer::new().bare_item(bytes).finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http::HeaderValue;
    use policy::agent_api::HmacSecret;
    use policy::credentials::IssuedKey;

    #[test]
    fn a_full_replay_guard_refuses_new_signatures_until_old_ones_expire() {
        let guard = ReplayGuard::with_capacity(2);
        assert_eq!(guard.first_use("k", b"one", 110, 100), Ok(()));
        assert_eq!(guard.first_use("k", b"two", 110, 100), Ok(()));
        assert_eq!(guard.first_use("k", b"one", 110, 101), Err("a replayed signature"));
        // Both still live: a third cannot be remembered, so it is refused, not forgotten.
        assert!(guard.first_use("k", b"three", 120, 105).is_err());
        assert!(guard.first_use("k", b"three", 120, 105).is_err(), "pruned once a second at most, and still full");
        // Once they expire they are dropped and room is made.
        assert_eq!(guard.first_use("k", b"three", 130, 111), Ok(()));
        assert_eq!(guard.first_use("k", b"three", 130, 112), Err("a replayed signature"));
    }
    use std::collections::BTreeMap;

    pub const KEY_ID: &str = "phk_0123456789abcdef";
    pub const SECRET: &str = "the-shared-secret-of-orders-1";

    pub fn credentials(expires_at: Option<i64>) -> Credentials {
        let issued = IssuedKey {
            client_app: 7,
            credential_id: 3,
            instance: "orders-1".into(),
            prefix: KEY_ID.into(),
            expires_at,
            secret_sha256: Some(digest(SECRET)),
        };
        Credentials {
            hmac_keys: BTreeMap::from([(KEY_ID.to_owned(), issued)]),
            ..Credentials::default()
        }
    }

    fn keyring() -> Keyring {
        let keyring = Keyring::in_memory();
        let secrets = HmacSecrets {
            keys: vec![HmacSecret {
                key_id: KEY_ID.into(),
                secret: SECRET.into(),
            }],
        };
        assert_eq!(keyring.accept(&credentials(None), secrets), 1);
        keyring
    }

    fn rule() -> HmacRule {
        HmacRule {
            algorithm: "hmac-sha256".into(),
            signed_components: vec!["@method".into(), "@path".into()],
            clock_skew_seconds: 30,
        }
    }

    /// Signs like a caller following RFC 9421: the base over `components`, HMAC-SHA256.
    pub fn sign_by_hand(
        method: &str,
        target: &str,
        headers: &mut HeaderMap,
        components: &[&str],
        created: i64,
        key_id: &str,
        secret: &str,
    ) {
        let list = components
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(" ");
        let params = format!("({list});created={created};keyid=\"{key_id}\"");
        headers.insert(
            "signature-input",
            HeaderValue::from_str(&format!("sig1={params}")).unwrap(),
        );
        let (path, query) = target
            .split_once('?')
            .map_or((target, None), |(p, q)| (p, Some(q)));
        let mut base = String::new();
        for component in components {
            let value = match *component {
                "@method" => method.to_owned(),
                "@path" => path.to_owned(),
                "@query" => format!("?{}", query.unwrap_or("")),
                "@authority" => headers["host"].to_str().unwrap().to_owned(),
                field => headers[field].to_str().unwrap().to_owned(),
            };
            base.push_str(&format!("\"{component}\": {value}\n"));
        }
        base.push_str(&format!("\"@signature-params\": {params}"));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(base.as_bytes());
        let signature = byte_sequence(&mac.finalize().into_bytes());
        headers.insert(
            "signature",
            HeaderValue::from_str(&format!("sig1={signature}")).unwrap(),
        );
    }

    fn now() -> i64 {
        1_700_000_000_000
    }

    fn run(
        method: &str,
        target: &str,
        headers: &HeaderMap,
        replay: &ReplayGuard,
    ) -> Option<Result<Signed, String>> {
        verify(
            &Message {
                method,
                target,
                headers,
            },
            &[rule()],
            &credentials(None),
            &keyring(),
            replay,
            now(),
        )
    }

    #[test]
    fn a_signed_request_names_its_application_and_is_accepted_once() {
        let mut headers = HeaderMap::new();
        sign_by_hand(
            "POST",
            "/orders?x=1",
            &mut headers,
            &["@method", "@path", "@query"],
            now() / 1000,
            KEY_ID,
            SECRET,
        );
        let replay = ReplayGuard::default();
        let signed = run("POST", "/orders?x=1", &headers, &replay)
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                signed.credential.method.as_str(),
                signed.credential.client_app
            ),
            ("hmac", Some(7))
        );
        assert_eq!(signed.content_digest, None);
        let by_library = sign(
            &Message {
                method: "POST",
                target: "/orders?x=1",
                headers: &headers,
            },
            &["@method", "@path", "@query"],
            now() / 1000,
            KEY_ID,
            SECRET.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            (by_library.0.as_str(), by_library.1.as_str()),
            (
                headers["signature-input"].to_str().unwrap(),
                headers["signature"].to_str().unwrap()
            )
        );
        let again = run("POST", "/orders?x=1", &headers, &replay).unwrap();
        assert_eq!(again.err().as_deref(), Some("a replayed signature"));
        assert!(
            run("GET", "/", &HeaderMap::new(), &replay).is_none(),
            "unsigned: other methods are tried"
        );
    }

    #[test]
    fn tampering_stale_clocks_weak_coverage_and_unknown_keys_are_refused() {
        let replay = ReplayGuard::default();
        let refusal = |method: &str, target: &str, headers: &HeaderMap| {
            run(method, target, headers, &replay)
                .unwrap()
                .err()
                .unwrap()
        };
        let signed = |components: &[&str], created: i64, key_id: &str, secret: &str| {
            let mut headers = HeaderMap::new();
            sign_by_hand(
                "POST",
                "/orders",
                &mut headers,
                components,
                created,
                key_id,
                secret,
            );
            headers
        };
        let now = now() / 1000;
        let good = signed(&["@method", "@path"], now, KEY_ID, SECRET);
        assert_eq!(
            refusal("DELETE", "/orders", &good),
            "the signature does not verify"
        );
        assert_eq!(
            refusal("POST", "/orders/7", &good),
            "the signature does not verify"
        );
        assert_eq!(
            refusal(
                "POST",
                "/orders",
                &signed(&["@method", "@path"], now, KEY_ID, "guess")
            ),
            "the signature does not verify"
        );
        assert!(
            refusal(
                "POST",
                "/orders",
                &signed(&["@method"], now, KEY_ID, SECRET)
            )
            .contains("does not cover @path")
        );
        assert!(
            refusal(
                "POST",
                "/orders",
                &signed(&["@method", "@path"], now - 31, KEY_ID, SECRET)
            )
            .contains("clock skew")
        );
        assert!(
            refusal(
                "POST",
                "/orders",
                &signed(&["@method", "@path"], now + 31, KEY_ID, SECRET)
            )
            .contains("clock skew")
        );
        assert!(
            refusal(
                "POST",
                "/orders",
                &signed(&["@method", "@path"], now, "phk_unknown", SECRET)
            )
            .contains("unknown")
        );
        let mut missing = good.clone();
        missing.remove("signature");
        assert!(refusal("POST", "/orders", &missing).contains("without a Signature"));
        let mut garbage = good.clone();
        garbage.insert("signature-input", HeaderValue::from_static("sig1=(((("));
        assert!(refusal("POST", "/orders", &garbage).contains("structured"));
        let outcome = verify(
            &Message {
                method: "POST",
                target: "/orders",
                headers: &good,
            },
            &[rule()],
            &credentials(Some(now * 1000)),
            &keyring(),
            &replay,
            now * 1000,
        );
        assert!(
            outcome.unwrap().err().unwrap().contains("expired"),
            "a rotated key past its overlap"
        );
        let unheld = verify(
            &Message {
                method: "POST",
                target: "/orders",
                headers: &good,
            },
            &[rule()],
            &credentials(None),
            &Keyring::in_memory(),
            &replay,
            now * 1000,
        );
        assert!(unheld.unwrap().err().unwrap().contains("not held"));
    }

    #[test]
    fn covered_headers_and_the_content_digest_are_bound() {
        let body = br#"{"amount": 10}"#;
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-digest",
            HeaderValue::from_str(&format!("sha-256={}", byte_sequence(&Sha256::digest(body))))
                .unwrap(),
        );
        sign_by_hand(
            "POST",
            "/pay",
            &mut headers,
            &["@method", "@path", "content-digest"],
            now() / 1000,
            KEY_ID,
            SECRET,
        );
        let signed = run("POST", "/pay", &headers, &ReplayGuard::default())
            .unwrap()
            .unwrap();
        let header = signed.content_digest.unwrap();
        assert!(content_digest_matches(&header, body));
        assert!(!content_digest_matches(&header, br#"{"amount": 10000}"#));
        assert!(
            !content_digest_matches("md5=:AAAA:", body),
            "no known algorithm"
        );
        assert!(!content_digest_matches("garbage", body));
        let mut swapped = headers.clone();
        swapped.insert(
            "content-digest",
            HeaderValue::from_str(&format!(
                "sha-256={}",
                byte_sequence(&Sha256::digest(b"other"))
            ))
            .unwrap(),
        );
        assert_eq!(
            run("POST", "/pay", &swapped, &ReplayGuard::default())
                .unwrap()
                .err()
                .as_deref(),
            Some("the signature does not verify")
        );
    }

    #[test]
    fn only_secrets_the_bundle_pins_are_kept() {
        let keyring = Keyring::in_memory();
        assert!(keyring.lacks_any(&credentials(None)));
        let offered = HmacSecrets {
            keys: vec![
                HmacSecret {
                    key_id: KEY_ID.into(),
                    secret: "not-the-pinned-one".into(),
                },
                HmacSecret {
                    key_id: "phk_other".into(),
                    secret: "x".into(),
                },
            ],
        };
        assert_eq!(keyring.accept(&credentials(None), offered), 0);
        assert!(keyring.secret(KEY_ID).is_none());
        let dir = tempfile::tempdir().unwrap();
        let kept = Keyring::open(dir.path());
        kept.accept(
            &credentials(None),
            HmacSecrets {
                keys: vec![HmacSecret {
                    key_id: KEY_ID.into(),
                    secret: SECRET.into(),
                }],
            },
        );
        assert!(!kept.lacks_any(&credentials(None)));
        let reopened = Keyring::open(dir.path());
        assert_eq!(
            reopened.secret(KEY_ID).as_deref().map(Vec::as_slice),
            Some(SECRET.as_bytes()),
            "kept across a restart"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEYRING_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
