//! Bearer-token authentication before evaluation: a JWT is checked against the JWT methods
//! the fronted API declares in the bundle (issuer, audiences, algorithms, keys from a JWKS
//! URL or static keys) and becomes a [`VerifiedCredential`]. Verified tokens are cached
//! until they expire; JWKS are fetched once per URL, off the path of requests that do not
//! need them, and refreshed on an unknown key id at most every 30 seconds.
//!
//! Refused outright, whatever a bundle says: `none`, HMAC algorithms (a JWKS or a public
//! key is not a shared secret), a key whose family or declared algorithm differs from the
//! token's, tokens without `exp`, `iss` or `aud`.

use arc_swap::ArcSwap;
use dashmap::DashMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use policy::VerifiedCredential;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::protection::{AuthMethod, JWT_ALGORITHMS};

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 60;
/// A JWKS is fetched again for an unknown key id at most this often.
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);
/// Keys are re-read in the background after this long, so a key the issuer withdrew stops
/// being trusted without waiting for an unknown key id.
const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Longer than any real bearer token; longer ones are refused unread.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
pub const TOKEN_CACHE_CAPACITY: usize = 10_000;

/// A verification key with what it may be used for.
#[derive(Clone)]
pub struct KeyEntry {
    pub kid: Option<String>,
    /// The algorithm the key declares (a JWK's `alg`); the token's must be the same.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl KeyEntry {
    /// Whether this key may check a token signed with `alg` and naming `kid`.
    fn fits(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        let family_matches =
            self.key.family() == alg.family() && self.key.family() != AlgorithmFamily::Hmac;
        let alg_matches = self.alg.is_none_or(|declared| declared == alg);
        // A key without an id may check any token; a token without a kid may be checked by any key.
        let kid_matches = match (kid, &self.kid) {
            (Some(wanted), Some(own)) => wanted == own,
            _ => true,
        };
        family_matches && alg_matches && kid_matches
    }
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.key.family())
            .finish()
    }
}

/// A JWK, or `None` (with the reason) when it cannot verify signatures here.
fn key_from_jwk(jwk: &Jwk) -> Result<KeyEntry, String> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Err("an encryption key".into());
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(declared) => Some(
            Algorithm::try_from(declared)
                .map_err(|_| format!("algorithm {declared} cannot sign JWTs"))?,
        ),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    if key.family() == AlgorithmFamily::Hmac {
        return Err("a symmetric key".into());
    }
    Ok(KeyEntry {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

/// A static key from a bundle: PEM (RSA, EC or Ed25519 public key) or JWK JSON.
pub fn parse_static_key(text: &str) -> Result<KeyEntry, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        let jwk: Jwk = serde_json::from_str(trimmed).map_err(|e| format!("not a JWK: {e}"))?;
        return key_from_jwk(&jwk);
    }
    if trimmed.starts_with("-----BEGIN") {
        let pem = trimmed.as_bytes();
        let key = DecodingKey::from_rsa_pem(pem)
            .or_else(|_| DecodingKey::from_ec_pem(pem))
            .or_else(|_| DecodingKey::from_ed_pem(pem))
            .map_err(|_| "not an RSA, EC or Ed25519 public key in PEM".to_owned())?;
        return Ok(KeyEntry {
            kid: None,
            alg: None,
            key,
        });
    }
    Err("neither PEM nor JWK JSON".into())
}

/// One JWT method of the fronted API, ready to verify with.
#[derive(Debug)]
pub struct JwtIssuer {
    pub issuer: String,
    pub audiences: Vec<String>,
    /// The declared algorithms that are asymmetric and known here.
    pub algorithms: Vec<Algorithm>,
    pub jwks_url: Option<String>,
    pub static_keys: Vec<KeyEntry>,
}

impl JwtIssuer {
    /// The issuer for a `jwt` method; other methods are `None` (API keys, HMAC signatures
    /// and client certificates are checked by `api_keys`, `signatures` and `decide`).
    pub fn from_method(method: &AuthMethod) -> Option<JwtIssuer> {
        let AuthMethod::Jwt {
            issuer,
            audiences,
            jwks_url,
            static_keys,
            algorithms,
            ..
        } = method
        else {
            return None;
        };
        let algorithms = algorithms
            .iter()
            .filter(|name| JWT_ALGORITHMS.contains(&name.as_str()))
            .filter_map(|name| Algorithm::from_str(name).ok())
            .filter(|alg| alg.family() != AlgorithmFamily::Hmac)
            .collect();
        let static_keys = static_keys
            .iter()
            .enumerate()
            .filter_map(|(index, text)| match parse_static_key(text) {
                Ok(key) => Some(key),
                Err(error) => {
                    tracing::warn!(issuer, index, %error, "a static key of this JWT method is unusable; skipped");
                    None
                }
            })
            .collect();
        Some(JwtIssuer {
            issuer: issuer.clone(),
            audiences: audiences.clone(),
            algorithms,
            jwks_url: jwks_url.clone(),
            static_keys,
        })
    }
}

/// Every distinct JWT method of `api` in `policy`.
pub fn issuers_of(policy: &policy::CompiledPolicy, api: i64) -> Vec<Arc<JwtIssuer>> {
    let mut methods: Vec<&AuthMethod> = Vec::new();
    for method in policy.auth_methods(api) {
        if matches!(method, AuthMethod::Jwt { .. }) && !methods.contains(&method) {
            methods.push(method);
        }
    }
    methods
        .into_iter()
        .filter_map(JwtIssuer::from_method)
        .map(Arc::new)
        .collect()
}

/// What authentication found.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthResult {
    /// No credential of this kind was presented (other kinds are tried in `decide`).
    Absent,
    Verified(Arc<VerifiedCredential>),
    /// A bearer token was presented and refused, and why.
    Refused(String),
}

impl AuthResult {
    /// The verified credential, shared (the evaluator reads it where the cache holds it).
    pub fn credential(&self) -> Option<Arc<VerifiedCredential>> {
        match self {
            AuthResult::Verified(credential) => Some(credential.clone()),
            _ => None,
        }
    }
}

/// The bearer token in an `Authorization` value, if that is its scheme.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

struct CachedToken {
    revision: u64,
    /// Unix seconds.
    expires_at: u64,
    credential: Arc<VerifiedCredential>,
}

/// Verified tokens by SHA-256, until they expire, for the revision that verified them.
pub struct TokenCache {
    entries: DashMap<[u8; 32], CachedToken>,
    capacity: usize,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: DashMap::new(),
            capacity,
        }
    }

    fn get(&self, key: &[u8; 32], revision: u64, now: u64) -> Option<Arc<VerifiedCredential>> {
        let entry = self.entries.get(key)?;
        (entry.revision == revision && now < entry.expires_at).then(|| entry.credential.clone())
    }

    fn insert(&self, key: [u8; 32], entry: CachedToken) {
        if self.entries.len() >= self.capacity {
            let now = unix_seconds();
            self.entries.retain(|_, cached| cached.expires_at > now);
            // Still full of live tokens: drop about a tenth, whichever come first; they are
            // verified again on their next use.
            if self.entries.len() >= self.capacity {
                let excess = self.entries.len() + 1 - self.capacity + self.capacity / 10;
                let victims: Vec<[u8; 32]> =
                    self.entries.iter().take(excess).map(|e| *e.key()).collect();
                for victim in victims {
                    self.entries.remove(&victim);
                }
            }
        }
        self.entries.insert(key, entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[derive(Default)]
struct FetchTimes {
    attempted: Option<Instant>,
    succeeded: Option<Instant>,
}

/// One JWKS URL: its keys (read without locking) and when they were fetched.
struct Jwks {
    url: String,
    keys: ArcSwap<Vec<KeyEntry>>,
    times: Mutex<FetchTimes>,
    /// Held while fetching, so concurrent requests for an unknown kid cause one fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl Jwks {
    fn times(&self) -> std::sync::MutexGuard<'_, FetchTimes> {
        self.times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn recently_attempted(&self) -> bool {
        self.times()
            .attempted
            .is_some_and(|at| at.elapsed() < JWKS_MIN_REFRESH)
    }

    fn stale(&self) -> bool {
        self.times()
            .succeeded
            .is_none_or(|at| at.elapsed() > JWKS_MAX_AGE)
    }

    /// Fetches the keys unless another fetch happened within the minimum interval.
    async fn refresh(&self, http: &reqwest::Client) {
        let _one_at_a_time = self.fetching.lock().await;
        if self.recently_attempted() {
            return;
        }
        self.times().attempted = Some(Instant::now());
        match fetch_jwks(http, &self.url).await {
            Ok(keys) => {
                tracing::debug!(url = %self.url, keys = keys.len(), "JWKS fetched");
                self.keys.store(Arc::new(keys));
                self.times().succeeded = Some(Instant::now());
            }
            Err(error) => {
                tracing::warn!(url = %self.url, %error, "could not fetch the JWKS; keeping the keys held")
            }
        }
    }
}

async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<Vec<KeyEntry>, String> {
    let mut response = http
        .get(url)
        .timeout(JWKS_FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    parse_jwks(&body)
}

/// The usable keys of a JWKS document; keys of other kinds (encryption, unknown types)
/// are skipped rather than failing the whole set.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<KeyEntry>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    Ok(document
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(|jwk| key_from_jwk(&jwk).ok())
        .collect())
}

/// Verifies bearer tokens; shared by every request, kept across bundle revisions.
pub struct Authenticator {
    http: reqwest::Client,
    jwks: DashMap<String, Arc<Jwks>>,
    tokens: TokenCache,
}

impl Authenticator {
    pub fn new(http: reqwest::Client) -> Authenticator {
        Authenticator {
            http,
            jwks: DashMap::new(),
            tokens: TokenCache::new(TOKEN_CACHE_CAPACITY),
        }
    }

    fn jwks(&self, url: &str) -> Arc<Jwks> {
        if let Some(found) = self.jwks.get(url) {
            return found.clone();
        }
        self.jwks
            .entry(url.to_owned())
            .or_insert_with(|| {
                Arc::new(Jwks {
                    url: url.to_owned(),
                    keys: ArcSwap::from_pointee(Vec::new()),
                    times: Mutex::new(FetchTimes::default()),
                    fetching: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// Fetches, in the background, the JWKS of issuers not fetched yet, so the first
    /// request after a bundle arrives does not wait for it.
    pub fn prefetch(self: &Arc<Self>, issuers: &[Arc<JwtIssuer>]) {
        for url in issuers.iter().filter_map(|issuer| issuer.jwks_url.clone()) {
            let jwks = self.jwks(&url);
            if jwks.stale() {
                let this = self.clone();
                tokio::spawn(async move { jwks.refresh(&this.http).await });
            }
        }
    }

    /// Authenticates the `Authorization` value of a request against `issuers`, the JWT
    /// methods of bundle `revision`.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        issuers: &[Arc<JwtIssuer>],
        revision: u64,
    ) -> AuthResult {
        let Some(token) = authorization.and_then(bearer_token) else {
            // Another scheme, or none: API keys, signatures and certificates are read elsewhere.
            return AuthResult::Absent;
        };
        if token.len() > MAX_TOKEN_BYTES {
            return AuthResult::Refused("token too long".into());
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(credential) = self.tokens.get(&digest, revision, unix_seconds()) {
            return AuthResult::Verified(credential);
        }
        match self.verify(token, issuers).await {
            Ok((credential, expires_at)) => {
                let credential = Arc::new(credential);
                self.tokens.insert(
                    digest,
                    CachedToken {
                        revision,
                        expires_at,
                        credential: credential.clone(),
                    },
                );
                AuthResult::Verified(credential)
            }
            Err(reason) => AuthResult::Refused(reason),
        }
    }

    async fn verify(
        &self,
        token: &str,
        issuers: &[Arc<JwtIssuer>],
    ) -> Result<(VerifiedCredential, u64), String> {
        // Read unverified only to choose the issuer and key; everything is verified after.
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        let unverified: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| format!("malformed token: {e}"))?;
        let Some(Value::String(iss)) = unverified.get("iss") else {
            return Err("the token names no issuer".into());
        };
        let candidates: Vec<&Arc<JwtIssuer>> = issuers
            .iter()
            .filter(|issuer| issuer.issuer == *iss)
            .collect();
        if candidates.is_empty() {
            return Err("the issuer is not accepted here".into());
        }
        let alg = header.alg;
        let kid = header.kid.as_deref();
        let mut last_error = format!("algorithm {alg:?} is not accepted for this issuer");
        for issuer in candidates {
            if !issuer.algorithms.contains(&alg) {
                continue;
            }
            let mut keys: Vec<KeyEntry> = issuer
                .static_keys
                .iter()
                .filter(|key| key.fits(alg, kid))
                .cloned()
                .collect();
            if let Some(url) = &issuer.jwks_url {
                let jwks = self.jwks(url);
                let found = |jwks: &Jwks| {
                    jwks.keys
                        .load()
                        .iter()
                        .filter(|key| key.fits(alg, kid))
                        .cloned()
                        .collect::<Vec<_>>()
                };
                let mut from_jwks = found(&jwks);
                let named_but_missing = kid.is_some_and(|kid| {
                    !from_jwks.iter().any(|key| key.kid.as_deref() == Some(kid))
                });
                if from_jwks.is_empty() || named_but_missing {
                    // An unknown kid: the issuer may have rotated. Fetch (rate-limited) and look again.
                    jwks.refresh(&self.http).await;
                    from_jwks = found(&jwks);
                } else if jwks.stale() && !jwks.recently_attempted() {
                    let (jwks, http) = (jwks.clone(), self.http.clone());
                    tokio::spawn(async move { jwks.refresh(&http).await });
                }
                keys.extend(from_jwks);
            }
            if keys.is_empty() {
                last_error = "no key of the issuer matches the token".into();
                continue;
            }
            let mut validation = Validation::new(alg);
            validation.leeway = LEEWAY_SECONDS;
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = true;
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            validation.set_issuer(&[issuer.issuer.as_str()]);
            validation.set_audience(&issuer.audiences);
            for key in &keys {
                match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                    Ok(data) => return credential_from(&issuer.issuer, data.claims),
                    Err(error) => {
                        last_error = describe(error.kind());
                        // A signature that fails may verify with the next key; a verified
                        // token whose claims are wrong will not get better with another.
                        if !matches!(
                            error.kind(),
                            ErrorKind::InvalidSignature
                                | ErrorKind::InvalidEcdsaKey
                                | ErrorKind::InvalidRsaKey(_)
                                | ErrorKind::InvalidEddsaKey
                                | ErrorKind::InvalidKeyFormat
                        ) {
                            break;
                        }
                    }
                }
            }
        }
        Err(last_error)
    }

    /// Tokens held verified (for tests and diagnostics).
    pub fn cached_tokens(&self) -> usize {
        self.tokens.len()
    }
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
        ErrorKind::InvalidAudience => "the token is for another audience".into(),
        ErrorKind::InvalidIssuer => "the token's issuer does not match".into(),
        ErrorKind::InvalidSignature => "the signature does not verify".into(),
        ErrorKind::InvalidAlgorithm => "the algorithm does not fit the key".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim} claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("the {claim} claim is malformed"),
        other => format!("the token does not verify ({other:?})"),
    }
}

/// The credential for verified claims, and when it expires (Unix seconds).
fn credential_from(
    issuer: &str,
    claims: Map<String, Value>,
) -> Result<(VerifiedCredential, u64), String> {
    let expires_at = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or("the exp claim is malformed")?;
    let strings = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::String(text)) => vec![text.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    };
    let scopes = match claims.get("scope") {
        Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
        _ => match claims.get("scp") {
            Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
            other => strings(other),
        },
    };
    let credential = VerifiedCredential {
        method: "jwt".into(),
        client_app: None,
        subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
        issuer: Some(issuer.to_owned()),
        audiences: strings(claims.get("aud")),
        scopes,
        roles: strings(claims.get("roles")),
        claims: claims.into_iter().collect::<BTreeMap<_, _>>(),
        identity: None,
    };
    Ok((credential, expires_at))
}

pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    pub const ISSUER: &str = "https://login.example.com";
    pub const RSA_PEM: &str = include_str!("../../server/tests/fixtures/oidc_provider_key.pem");
    pub const OTHER_RSA_PEM: &str =
        include_str!("../../server/tests/fixtures/oidc_impostor_key.pem");

    pub fn rsa_key(pem: &str) -> EncodingKey {
        EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
    }

    /// The public half of a signing key as a JWK with `kid`.
    pub fn public_jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk
    }

    pub fn token(key: &EncodingKey, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn claims(extra: Value) -> Value {
        let mut claims = json!({
            "iss": ISSUER, "aud": "pets", "sub": "alice", "exp": unix_seconds() + 600,
            "scope": "pets:read pets:write", "roles": ["admin"], "tenant": "t1",
        });
        if let (Some(base), Value::Object(more)) = (claims.as_object_mut(), extra) {
            base.extend(more);
        }
        claims
    }

    fn issuer_with(keys: Vec<KeyEntry>, algorithms: &[Algorithm]) -> Vec<Arc<JwtIssuer>> {
        vec![Arc::new(JwtIssuer {
            issuer: ISSUER.into(),
            audiences: vec!["pets".into()],
            algorithms: algorithms.to_vec(),
            jwks_url: None,
            static_keys: keys,
        })]
    }

    fn authenticator() -> Authenticator {
        Authenticator::new(reqwest::Client::new())
    }

    fn rsa_issuer() -> Vec<Arc<JwtIssuer>> {
        let jwk = public_jwk(&rsa_key(RSA_PEM), Algorithm::RS256, "k1");
        issuer_with(
            vec![parse_static_key(&serde_json::to_string(&jwk).unwrap()).unwrap()],
            &[Algorithm::RS256],
        )
    }

    async fn check(issuers: &[Arc<JwtIssuer>], token: &str) -> AuthResult {
        authenticator()
            .authenticate(Some(&format!("Bearer {token}")), issuers, 1)
            .await
    }

    #[tokio::test]
    async fn a_valid_rs256_token_becomes_a_credential_with_its_claims() {
        let issuers = rsa_issuer();
        let token = token(
            &rsa_key(RSA_PEM),
            Algorithm::RS256,
            Some("k1"),
            &claims(json!({})),
        );
        let AuthResult::Verified(credential) = check(&issuers, &token).await else {
            panic!("not verified")
        };
        assert_eq!(credential.method, "jwt");
        assert_eq!(credential.subject.as_deref(), Some("alice"));
        assert_eq!(credential.issuer.as_deref(), Some(ISSUER));
        assert_eq!(credential.audiences, ["pets"]);
        assert_eq!(credential.scopes, ["pets:read", "pets:write"]);
        assert_eq!(credential.roles, ["admin"]);
        assert_eq!(credential.claims["tenant"], "t1");
        // `scp` as an array and `aud` as an array read the same way.
        let token = crate::authn::tests::token(
            &rsa_key(RSA_PEM),
            Algorithm::RS256,
            Some("k1"),
            &json!({"iss": ISSUER, "aud": ["other", "pets"], "exp": unix_seconds() + 60, "scp": ["a", "b"]}),
        );
        let AuthResult::Verified(credential) = check(&issuers, &token).await else {
            panic!("not verified")
        };
        assert_eq!(
            (credential.audiences.len(), credential.scopes.clone()),
            (2, vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(credential.subject, None);
    }

    #[tokio::test]
    async fn wrong_audience_issuer_expiry_or_key_is_refused() {
        let issuers = rsa_issuer();
        let key = rsa_key(RSA_PEM);
        let refused = |result: AuthResult| matches!(result, AuthResult::Refused(_));
        let wrong_aud = token(
            &key,
            Algorithm::RS256,
            Some("k1"),
            &claims(json!({"aud": "orders"})),
        );
        assert_eq!(
            check(&issuers, &wrong_aud).await,
            AuthResult::Refused("the token is for another audience".into())
        );
        let wrong_iss = token(
            &key,
            Algorithm::RS256,
            Some("k1"),
            &claims(json!({"iss": "https://evil.example.com"})),
        );
        assert_eq!(
            check(&issuers, &wrong_iss).await,
            AuthResult::Refused("the issuer is not accepted here".into())
        );
        let expired = token(
            &key,
            Algorithm::RS256,
            Some("k1"),
            &claims(json!({"exp": unix_seconds() - 120})),
        );
        assert_eq!(
            check(&issuers, &expired).await,
            AuthResult::Refused("the token has expired".into())
        );
        // Inside the leeway an expiry is forgiven; a future nbf beyond it is not.
        let just_expired = token(
            &key,
            Algorithm::RS256,
            Some("k1"),
            &claims(json!({"exp": unix_seconds() - 10})),
        );
        assert!(matches!(
            check(&issuers, &just_expired).await,
            AuthResult::Verified(_)
        ));
        let early = token(
            &key,
            Algorithm::RS256,
            Some("k1"),
            &claims(json!({"nbf": unix_seconds() + 600})),
        );
        assert!(refused(check(&issuers, &early).await));
        let string_nbf = token(
            &key,
            Algorithm::RS256,
            Some("k1"),
            &claims(json!({"nbf": "99999999999"})),
        );
        assert!(
            refused(check(&issuers, &string_nbf).await),
            "a claim of the wrong type is not skipped"
        );
        let no_exp = {
            let mut c = claims(json!({}));
            c.as_object_mut().unwrap().remove("exp");
            token(&key, Algorithm::RS256, Some("k1"), &c)
        };
        assert!(refused(check(&issuers, &no_exp).await));
        let impostor = token(
            &rsa_key(OTHER_RSA_PEM),
            Algorithm::RS256,
            Some("k1"),
            &claims(json!({})),
        );
        assert_eq!(
            check(&issuers, &impostor).await,
            AuthResult::Refused("the signature does not verify".into())
        );
        let unknown_kid = token(&key, Algorithm::RS256, Some("k2"), &claims(json!({})));
        assert_eq!(
            check(&issuers, &unknown_kid).await,
            AuthResult::Refused("no key of the issuer matches the token".into())
        );
        assert!(refused(check(&issuers, "not.a.token").await));
        assert!(
            refused(check(&issuers, "").await) || check(&issuers, "").await == AuthResult::Absent
        );
    }

    #[tokio::test]
    async fn alg_confusion_and_none_are_refused() {
        // HS256 keyed with the issuer's public key: a classic confusion attack.
        let jwk = public_jwk(&rsa_key(RSA_PEM), Algorithm::RS256, "k1");
        let public_bytes = serde_json::to_vec(&jwk).unwrap();
        let hs = EncodingKey::from_secret(&public_bytes).unwrap();
        let confused = token(&hs, Algorithm::HS256, Some("k1"), &claims(json!({})));
        assert!(matches!(
            check(&rsa_issuer(), &confused).await,
            AuthResult::Refused(_)
        ));
        // Even if a bundle listed HS256, it is never accepted.
        let listed = JwtIssuer::from_method(&AuthMethod::Jwt {
            issuer: ISSUER.into(),
            audiences: vec!["pets".into()],
            jwks_url: None,
            static_keys: vec![serde_json::to_string(&jwk).unwrap()],
            algorithms: vec!["HS256".into(), "RS256".into(), "none".into()],
            required_scopes: vec![],
        })
        .unwrap();
        assert_eq!(listed.algorithms, [Algorithm::RS256]);
        assert!(matches!(
            check(&[Arc::new(listed)], &confused).await,
            AuthResult::Refused(_)
        ));
        // An oct JWK is never a verification key here.
        assert!(parse_static_key(r#"{"kty":"oct","k":"c2VjcmV0"}"#).is_err());

        let b64 = |value: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(value).unwrap())
        };
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&claims(json!({})))
        );
        assert!(matches!(
            check(&rsa_issuer(), &none).await,
            AuthResult::Refused(_)
        ));
        // An RS256 signature presented as PS256 (declared alg differs from the key's).
        let ps = token(
            &rsa_key(RSA_PEM),
            Algorithm::PS256,
            Some("k1"),
            &claims(json!({})),
        );
        let issuers = issuer_with(
            rsa_issuer()[0].static_keys.clone(),
            &[Algorithm::RS256, Algorithm::PS256],
        );
        assert!(
            matches!(check(&issuers, &ps).await, AuthResult::Refused(_)),
            "the JWK says RS256"
        );
    }

    #[tokio::test]
    async fn pem_static_keys_and_the_token_cache() {
        let public_pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA";
        assert!(
            parse_static_key(public_pem).is_err(),
            "a cut PEM is refused, not a panic"
        );
        assert!(parse_static_key("hello").is_err());
        let issuers = rsa_issuer();
        let authenticator = authenticator();
        let token = token(
            &rsa_key(RSA_PEM),
            Algorithm::RS256,
            Some("k1"),
            &claims(json!({})),
        );
        let header = format!("Bearer {token}");
        assert!(matches!(
            authenticator.authenticate(Some(&header), &issuers, 1).await,
            AuthResult::Verified(_)
        ));
        assert_eq!(authenticator.cached_tokens(), 1);
        // A cached token is only good for the revision that verified it.
        assert!(matches!(
            authenticator.authenticate(Some(&header), &[], 2).await,
            AuthResult::Refused(_)
        ));
        assert!(matches!(
            authenticator
                .authenticate(Some("Basic abc"), &issuers, 1)
                .await,
            AuthResult::Absent
        ));
        assert!(matches!(
            authenticator.authenticate(None, &issuers, 1).await,
            AuthResult::Absent
        ));
    }

    #[test]
    fn the_token_cache_stays_bounded() {
        let cache = TokenCache::new(100);
        let credential = Arc::new(VerifiedCredential::default());
        let far = unix_seconds() + 3600;
        for n in 0..1_000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&n.to_be_bytes());
            cache.insert(
                key,
                CachedToken {
                    revision: 1,
                    expires_at: far,
                    credential: credential.clone(),
                },
            );
            assert!(cache.len() <= 100);
        }
        let mut last = [0u8; 32];
        last[..4].copy_from_slice(&999u32.to_be_bytes());
        assert!(cache.get(&last, 1, unix_seconds()).is_some());
        assert!(cache.get(&last, 1, far).is_none(), "not past its expiry");
    }

    #[test]
    fn a_jwks_with_foreign_keys_keeps_the_usable_ones() {
        let jwk = public_jwk(&rsa_key(RSA_PEM), Algorithm::RS256, "k1");
        let body = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "unknown", "kid": "x"},
            {"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"},
            jwk,
        ]});
        let keys = parse_jwks(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(
            keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>(),
            [Some("k1".to_owned())]
        );
        assert!(parse_jwks(b"[]").is_err());
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Bearer"), None);
    }
}
