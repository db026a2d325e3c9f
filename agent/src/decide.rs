//! One decision per request, shared by the reverse proxy and the gateway decision
//! endpoint: gather the facts (bearer token verified first), evaluate against the bundle in
//! force, apply rate-limit obligations, then answer — forward, or deny with a problem
//! document — and hand a decision record to the spool. In monitor mode (the agent's
//! `--mode`, or the API's or operation's `enforcement` in the bundle) a denial is recorded
//! as `monitor` and the request goes through.

use crate::active::Enforcer;
use crate::authn::{AuthResult, Authenticator};
use crate::config::Mode;
use crate::limits::RateLimits;
use crate::problem::Problem;
use crate::signatures::{self, Keyring, Message, ReplayGuard};
use crate::spool::DecisionLog;
use crate::status::Stats;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, header};
use policy::agent_api::DecisionRecord;
use policy::contract::{Checker, Violation};
use policy::evaluate::{Request, decide};
use policy::inspect::ResponseField;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Paths kept in decision records are cut to this many bytes: a record is evidence of a
/// decision, not a copy of whatever a caller sent.
const MAX_RECORDED_PATH: usize = 2048;

/// What a request is decided on.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    pub method: &'a str,
    /// The request target's path, with its query if any.
    pub target: &'a str,
    pub source: IpAddr,
    /// The request's headers (the gateway's copy of them at the decision endpoint).
    pub headers: &'a HeaderMap,
    /// The identities of the client certificate the caller presented over TLS and the
    /// configured CA verified, most specific first; empty without one.
    pub peer_identities: &'a [String],
    /// Whether the request and its response pass through the agent, so a request
    /// contract can read the body and L3 can inspect the response (the proxy), or not (the
    /// gateway decision endpoint).
    pub sees_response: bool,
}

#[derive(Debug)]
pub enum Verdict {
    /// Forward; with a duty when the response must be inspected before it is answered.
    Forward(Option<Box<ResponseDuty>>),
    /// Allowed so far: the body must be read and checked against the request contract
    /// first ([`Decider::finish_body`] gives the final verdict).
    CheckBody(Box<BodyDuty>),
    Deny(Denial),
}

/// A request contract's body check left for a request allowed on everything else.
pub struct BodyDuty {
    /// The request contract's body check, if any.
    pub checker: Option<Arc<Checker>>,
    /// The `Content-Digest` a verified signature covers, which the body must match.
    content_digest: Option<String>,
    /// Monitor mode: a violation is recorded and the request forwarded.
    monitor: bool,
    record: DecisionRecord,
    /// L3 work for the response, when there is some.
    response: Option<(Vec<String>, Vec<String>, Vec<ResponseField>)>,
}

impl std::fmt::Debug for BodyDuty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyDuty").field("monitor", &self.monitor).field("record", &self.record).finish_non_exhaustive()
    }
}

impl BodyDuty {
    /// The most the body may hold, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        let bound = self.checker.as_ref().map_or(store::protection::MAX_CONTRACT_BODY_BYTES, |c| c.contract().max_body_bytes);
        bound as usize
    }
}

/// What reading a body to check it gave.
pub enum ReadBody<'a> {
    Read { content_type: Option<&'a str>, body: &'a [u8] },
    TooLarge,
    /// The body broke off: it cannot be forwarded whatever the mode.
    Unreadable,
    /// The caller stopped sending it (`Timeouts::caller_body`): nor can this.
    TimedOut,
}

/// L3 work left for the response of an allowed request: the classes to mask or whose
/// presence blocks it, and where they sit. Its decision record is completed and written
/// once the response is known ([`Decider::finish_inspected`]).
#[derive(Debug)]
pub struct ResponseDuty {
    pub mask: Vec<String>,
    pub block: Vec<String>,
    pub fields: Vec<ResponseField>,
    /// Monitor mode: inspect and record, but answer the response unchanged.
    pub monitor: bool,
    record: DecisionRecord,
}

/// What L3 found in a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inspected {
    /// Nothing to change (or the upstream did not answer).
    Clean,
    Masked,
    /// A class whose presence blocks the response was in it.
    Withheld,
    /// Not JSON, compressed, unreadable or too large, while classes had to be looked for.
    NotInspectable,
}

/// A refusal, ready to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub problem: Problem,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
    /// The `WWW-Authenticate` challenge, for 401.
    pub challenge: Option<&'static str>,
}

impl Denial {
    pub fn new(status: u16, code: &str) -> Denial {
        Denial {
            problem: Problem::new(status, code),
            retry_after: None,
            challenge: None,
        }
    }

    /// A request-contract refusal, with what is wrong in the caller's request.
    fn contract(violation: Violation) -> Denial {
        Denial {
            problem: Problem::with_detail(violation.status, violation.code, violation.detail),
            retry_after: None,
            challenge: None,
        }
    }

    pub fn response(&self) -> Response {
        let mut response = self.problem.response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

pub struct Decider {
    pub enforcer: Arc<Enforcer>,
    pub authn: Arc<Authenticator>,
    pub limits: RateLimits,
    pub mode: Mode,
    pub fail_open: bool,
    pub stats: Arc<Stats>,
    pub log: DecisionLog,
    pub record_ids: RecordIds,
    /// HMAC secrets pinned by the bundle in force, and signatures already accepted.
    pub keyring: Arc<Keyring>,
    pub replay: ReplayGuard,
}

/// Decision record ids: a random prefix drawn at start and a counter, so ids are unique
/// across restarts (the control plane deduplicates on them) without asking the operating
/// system for randomness on every request.
pub struct RecordIds {
    run: u64,
    next: std::sync::atomic::AtomicU64,
}

impl Default for RecordIds {
    fn default() -> Self {
        RecordIds {
            run: rand::random(),
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl RecordIds {
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Encoded straight into its buffer, without the formatting machinery.
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::from_u64_pair(self.run, n).hyphenated().encode_lower(&mut text).to_owned()
    }
}

impl Decider {
    pub async fn decide(&self, facts: &Facts<'_>) -> Verdict {
        let started = Instant::now();
        let path = facts
            .target
            .split_once('?')
            .map_or(facts.target, |(path, _)| path);
        let Some(enforced) = self.enforcer.current() else {
            // Fail closed: without a verified bundle there is nothing to enforce.
            let denial = Denial::new(503, "no_verified_bundle");
            let forward = self.fail_open;
            self.finish(
                facts,
                path,
                None,
                (None, None),
                &denial,
                forward,
                None,
                started,
            )
            .await;
            return if forward {
                Verdict::Forward(None)
            } else {
                Verdict::Deny(denial)
            };
        };

        // One credential per request: a Palisade API key when the API takes them and one
        // is sent, else a signature, else the bearer token, else a client certificate.
        let now = crate::now_millis();
        let credentials = &enforced.prepared.policy.credentials;
        let api_key = crate::api_keys::authenticate(facts.headers, &enforced.api_key_headers, credentials, now);
        // Held to the rules of the operation called; a route that takes no signatures
        // leaves a `Signature-Input` to the upstream and tries the bearer token.
        let signature = match (&api_key, enforced.takes_signatures) {
            (None, true) if facts.headers.contains_key("signature-input") => {
                let rules = signatures::rules_for(&enforced.prepared, self.enforcer.api(), facts.method, path);
                (!rules.is_empty())
                    .then(|| {
                        signatures::verify(
                            &Message { method: facts.method, target: facts.target, headers: facts.headers },
                            &rules,
                            credentials,
                            &self.keyring,
                            &self.replay,
                            now,
                        )
                    })
                    .flatten()
            }
            _ => None,
        };
        let scheme = match (&api_key, &signature) {
            (Some(_), _) => Scheme::ApiKey,
            (None, Some(_)) => Scheme::Signature,
            (None, None) => Scheme::Bearer,
        };
        // A signature covering `Content-Digest` binds the body too: checked once it is read.
        let content_digest = signature.as_ref().and_then(|outcome| outcome.as_ref().ok()).and_then(|signed| signed.content_digest.clone());
        let auth = match (api_key, signature) {
            (Some(result), _) => result,
            (None, Some(outcome)) => signatures::auth_result(&outcome),
            (None, None) => {
                let authorization = facts
                    .headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                self.authn
                    .authenticate(authorization, &enforced.issuers, enforced.revision)
                    .await
            }
        };
        if let AuthResult::Refused(reason) = &auth {
            tracing::debug!(%reason, method = facts.method, path, ?scheme, "credential refused");
        }
        // mTLS: a verified client certificate authenticates a request that presents nothing
        // else when its identity is registered, and names the caller's service identity
        // (for L1) whatever else it presents; an unregistered one only names it.
        let registered = facts
            .peer_identities
            .iter()
            .find_map(|identity| credentials.mtls_identity(identity, now).map(|issued| (identity, issued)));
        let certificate = registered.map(|(identity, _)| identity).or(facts.peer_identities.first()).cloned();
        let (auth, scheme) = match (auth, registered) {
            (AuthResult::Absent, Some((identity, issued))) => {
                let credential = policy::VerifiedCredential {
                    method: "mtls".into(),
                    client_app: Some(issued.client_app),
                    subject: Some(issued.instance.clone()),
                    identity: Some(identity.clone()),
                    ..policy::VerifiedCredential::default()
                };
                (AuthResult::Verified(Arc::new(credential)), Scheme::Certificate)
            }
            (auth, _) => (auth, scheme),
        };
        let caller = match &auth {
            AuthResult::Verified(credential) => caller_of(credential),
            _ => None,
        };
        let mut credential = auth.credential();
        match (&mut credential, certificate) {
            // Copied only here, to add the certificate's identity to the token's claims.
            (Some(credential), Some(identity)) if credential.identity.is_none() => Arc::make_mut(credential).identity = Some(identity),
            // Verified by the CA, registered nowhere: an identity, not a credential.
            (None, Some(identity)) if !matches!(auth, AuthResult::Refused(_)) => {
                credential = Some(Arc::new(policy::VerifiedCredential { method: "certificate".into(), identity: Some(identity), ..Default::default() }));
            }
            _ => {}
        }
        let request = Request {
            api: self.enforcer.api(),
            method: facts.method.to_owned(),
            path: path.to_owned(),
            source: facts.source,
            credential,
            risk: None,
            device: false,
            consent: None,
        };
        let decision = decide(&enforced.prepared, &request);
        let matched = decision
            .matched
            .as_ref()
            .map(|m| (Some(m.api_id), Some(m.operation_id)))
            .unwrap_or((None, None));

        let inspect = !decision.obligations.response_fields.is_empty();
        // Monitor mode: the agent's (`--mode monitor`), or the API's or operation's setting.
        let monitor = self.mode == Mode::Monitor || decision.monitor;
        let mut body_check = None;
        let denial = if decision.allow {
            match self.limits.check(&decision.obligations.rate_limits) {
                // A gateway answers with the upstream's response itself: data the caller may
                // not see could not be masked or withheld, so the request is refused.
                Ok(()) if inspect && !facts.sees_response => {
                    Some(Denial::new(403, "response_inspection_unavailable"))
                }
                // Last before forwarding: the request contract.
                Ok(()) => match contract_check(&enforced, &decision, facts) {
                    // A gateway cannot show the agent the body a signature's digest binds.
                    Ok(_) if content_digest.is_some() && !facts.sees_response => {
                        Some(Denial::new(403, "request_inspection_unavailable"))
                    }
                    Ok(checker) => {
                        body_check = checker;
                        None
                    }
                    Err(denial) => Some(denial),
                },
                Err(wait) => {
                    let mut denial = Denial::new(429, "rate_limited");
                    // Whole seconds, rounded up: a client retrying at once would be refused again.
                    denial.retry_after = Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
                    Some(denial)
                }
            }
        } else {
            let code = decision
                .reason
                .as_ref()
                .map_or("denied", |step| step.code.as_str());
            let refused = matches!(auth, AuthResult::Refused(_));
            // A presented credential that failed verification says more than "unauthenticated".
            let code = match (decision.status, refused, scheme) {
                (401, true, Scheme::Bearer) if code == "unauthenticated" => "invalid_token",
                (401, true, Scheme::ApiKey) if code == "unauthenticated" => "invalid_api_key",
                (401, true, Scheme::Signature) if code == "unauthenticated" => "invalid_signature",
                _ => code,
            };
            let mut denial = Denial::new(decision.status, code);
            if denial.problem.status == 401 {
                denial.challenge = Some(match (refused, scheme) {
                    (true, Scheme::Bearer) => "Bearer error=\"invalid_token\"",
                    (true, Scheme::ApiKey) => "ApiKey",
                    (true, Scheme::Signature) => "Signature",
                    (true, Scheme::Certificate) | (false, _) => "Bearer",
                });
            }
            Some(denial)
        };
        match denial {
            // Work left before the record is complete: the body's check, the response's.
            None if body_check.is_some() || content_digest.is_some() || inspect => {
                let record = self.record(
                    facts,
                    path,
                    Some(enforced.revision),
                    matched,
                    "allow",
                    200,
                    None,
                    caller,
                    started,
                );
                let obligations = decision.obligations;
                let response = (obligations.mask, obligations.block, obligations.response_fields);
                if body_check.is_some() || content_digest.is_some() {
                    let response = inspect.then_some(response);
                    Verdict::CheckBody(Box::new(BodyDuty { checker: body_check, content_digest, monitor, record, response }))
                } else {
                    let (mask, block, fields) = response;
                    Verdict::Forward(Some(Box::new(ResponseDuty { mask, block, fields, monitor, record })))
                }
            }
            None => {
                self.finish_allowed(
                    facts,
                    path,
                    Some(enforced.revision),
                    matched,
                    caller,
                    started,
                )
                .await;
                Verdict::Forward(None)
            }
            Some(denial) => {
                let forward = monitor;
                self.finish(
                    facts,
                    path,
                    Some(enforced.revision),
                    matched,
                    &denial,
                    forward,
                    caller,
                    started,
                )
                .await;
                if forward {
                    Verdict::Forward(None)
                } else {
                    Verdict::Deny(denial)
                }
            }
        }
    }

    async fn finish_allowed(
        &self,
        facts: &Facts<'_>,
        path: &str,
        revision: Option<u64>,
        matched: (Option<i64>, Option<i64>),
        caller: Option<String>,
        started: Instant,
    ) {
        self.stats.allowed.fetch_add(1, Ordering::Relaxed);
        self.log
            .record(self.record(
                facts, path, revision, matched, "allow", 200, None, caller, started,
            ))
            .await;
    }

    /// The verdict on a request whose body has been read for its contract: refused (in
    /// enforce mode) with what is wrong, else forwarded as decided.
    pub async fn finish_body(&self, duty: BodyDuty, read: ReadBody<'_>) -> Verdict {
        let max = duty.max_body_bytes();
        let BodyDuty { checker, content_digest, monitor, mut record, response } = duty;
        // Monitoring lets a violation through, but not a body the agent does not have.
        let forwardable = !matches!(read, ReadBody::Unreadable | ReadBody::TimedOut);
        let violation = match read {
            ReadBody::Read { body, .. } if content_digest.as_deref().is_some_and(|digest| !signatures::content_digest_matches(digest, body)) => {
                Some(Violation { status: 400, code: "content_digest_mismatch", detail: "the body does not match its signed Content-Digest".into() })
            }
            ReadBody::Read { content_type, body } => checker.and_then(|checker| checker.check_body(content_type, body).err()),
            ReadBody::TooLarge => Some(Violation { status: 413, code: "body_too_large", detail: format!("the body is larger than {max} bytes") }),
            ReadBody::Unreadable => Some(Violation { status: 400, code: "bad_request", detail: "the body could not be read".into() }),
            ReadBody::TimedOut => Some(Violation { status: 408, code: "request_timeout", detail: "the body stopped arriving".into() }),
        };
        if let Some(violation) = violation {
            record.status = violation.status;
            record.reason = Some(violation.code.to_owned());
            if !monitor || !forwardable {
                record.outcome = "deny".into();
                self.stats.denied.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(code = violation.code, detail = %violation.detail, "request body refused by its contract");
                self.log.record(record).await;
                return Verdict::Deny(Denial::contract(violation));
            }
            record.outcome = "monitor".into();
        }
        match response {
            Some((mask, block, fields)) => Verdict::Forward(Some(Box::new(ResponseDuty { mask, block, fields, monitor, record }))),
            None => {
                let counter = if record.outcome == "monitor" { &self.stats.monitored } else { &self.stats.allowed };
                counter.fetch_add(1, Ordering::Relaxed);
                self.log.record(record).await;
                Verdict::Forward(None)
            }
        }
    }

    /// Completes and writes the record of a request whose response was inspected.
    pub async fn finish_inspected(&self, duty: ResponseDuty, found: &Inspected) {
        let mut record = duty.record;
        // What enforcing does; in monitor mode anything but a clean response is recorded
        // as `monitor` (it would have been changed or refused) and answered unchanged.
        let (outcome, status, reason) = match found {
            Inspected::Clean => ("allow", 200, None),
            Inspected::Masked => ("allow", 200, Some("data_masked")),
            Inspected::Withheld => ("deny", 403, Some("data_withheld")),
            Inspected::NotInspectable => ("deny", 502, Some("response_not_inspectable")),
        };
        let outcome = if duty.monitor && *found != Inspected::Clean {
            "monitor"
        } else {
            outcome
        };
        // A monitored contract violation stays on record when the response was clean.
        let (outcome, status, reason) = if *found == Inspected::Clean && record.outcome == "monitor" {
            ("monitor", record.status, record.reason.as_deref())
        } else {
            (outcome, status, reason)
        };
        let reason = reason.map(str::to_owned);
        let counter = match outcome {
            "allow" => &self.stats.allowed,
            "monitor" => &self.stats.monitored,
            _ => &self.stats.denied,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        record.outcome = outcome.to_owned();
        record.status = status;
        record.reason = reason;
        self.log.record(record).await;
    }

    /// Counts and records a denial; `forwarded` when it is let through (monitor, fail-open).
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        facts: &Facts<'_>,
        path: &str,
        revision: Option<u64>,
        matched: (Option<i64>, Option<i64>),
        denial: &Denial,
        forwarded: bool,
        caller: Option<String>,
        started: Instant,
    ) {
        let outcome = if forwarded {
            self.stats.monitored.fetch_add(1, Ordering::Relaxed);
            "monitor"
        } else {
            self.stats.denied.fetch_add(1, Ordering::Relaxed);
            "deny"
        };
        tracing::debug!(method = facts.method, path, code = %denial.problem.code, status = denial.problem.status, outcome, "request denied");
        let code = Some(denial.problem.code.clone());
        self.log
            .record(self.record(
                facts,
                path,
                revision,
                matched,
                outcome,
                denial.problem.status,
                code,
                caller,
                started,
            ))
            .await;
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        facts: &Facts<'_>,
        path: &str,
        revision: Option<u64>,
        (api_id, operation_id): (Option<i64>, Option<i64>),
        outcome: &str,
        status: u16,
        reason: Option<String>,
        caller: Option<String>,
        started: Instant,
    ) -> DecisionRecord {
        DecisionRecord {
            id: self.record_ids.next(),
            at: crate::now_millis(),
            revision: revision.and_then(|r| i64::try_from(r).ok()),
            method: truncate(facts.method, 32).to_owned(),
            path: truncate(path, MAX_RECORDED_PATH).to_owned(),
            api_id,
            operation_id,
            outcome: outcome.to_owned(),
            status,
            reason,
            source: crate::ip_text(facts.source),
            caller,
            decision_micros: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        }
    }
}

/// The request contract of the matched operation, checked on what the request line and
/// headers show; `Ok(Some)` when the body remains to be checked.
// A refusal is built once per refused request; boxing it would cost every caller.
#[allow(clippy::result_large_err)]
fn contract_check(
    enforced: &crate::active::Enforced,
    decision: &policy::Decision,
    facts: &Facts<'_>,
) -> Result<Option<Arc<Checker>>, Denial> {
    let Some(matched) = &decision.matched else { return Ok(None) };
    let checker = match enforced.contracts.get(&matched.operation_id) {
        None => return Ok(None),
        Some(Err(_)) => return Err(Denial::new(500, "contract_unavailable")),
        Some(Ok(checker)) => checker,
    };
    let query = facts.target.split_once('?').map(|(_, query)| query);
    let header = |name: &str| facts.headers.get_all(name).iter().filter_map(|value| value.to_str().ok()).collect();
    checker.check_parameters(&matched.parameters, query, header).map_err(Denial::contract)?;
    if let Some(violation) = checker.refuse_unexpected_body(announces_body(facts.headers)) {
        return Err(Denial::contract(violation));
    }
    if !checker.reads_body() {
        return Ok(None);
    }
    if facts.sees_response {
        return Ok(Some(checker.clone()));
    }
    // A gateway keeps the body: a schema it must meet cannot be checked here.
    let has_schema = checker.contract().body.as_ref().is_some_and(|body| body.json_schema.is_some());
    if has_schema { Err(Denial::new(403, "request_inspection_unavailable")) } else { Ok(None) }
}

/// Whether a request says it carries a body: a `Content-Length` above zero, or chunked.
fn announces_body(headers: &HeaderMap) -> bool {
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    length.is_some_and(|length| length > 0) || headers.contains_key(header::TRANSFER_ENCODING)
}

/// Which kind of credential a request was authenticated by (or refused for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    ApiKey,
    Signature,
    Bearer,
    Certificate,
}

/// Who called, for decision logs: the client application and its instance, or the subject.
fn caller_of(credential: &policy::VerifiedCredential) -> Option<String> {
    let subject = credential.subject.as_deref();
    match (credential.client_app, subject) {
        (Some(app), Some(subject)) => Some(format!("app:{app}/{subject}")),
        (Some(app), None) => Some(format!("app:{app}")),
        (None, Some(subject)) => Some(format!("sub:{subject}")),
        (None, None) => None,
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_differ_within_a_run_and_between_runs() {
        let (first, second) = (RecordIds::default(), RecordIds::default());
        let a = first.next();
        assert_ne!(a, first.next());
        assert_ne!(a, second.next(), "another run draws another prefix");
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aéb", 3), "aé");
    }

    #[test]
    fn a_denial_carries_its_challenge_and_retry_after() {
        let mut denial = Denial::new(401, "unauthenticated");
        denial.challenge = Some("Bearer error=\"invalid_token\"");
        let response = denial.response();
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        let mut limited = Denial::new(429, "rate_limited");
        limited.retry_after = Some(7);
        assert_eq!(limited.response().headers()[header::RETRY_AFTER], "7");
    }
}
