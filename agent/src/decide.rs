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
use crate::spool::DecisionLog;
use crate::status::Stats;
use axum::response::Response;
use http::{HeaderValue, header};
use policy::agent_api::DecisionRecord;
use policy::evaluate::{Request, evaluate};
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
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// Whether the response passes through the agent, so L3 can inspect it (the proxy),
    /// or not (the gateway decision endpoint).
    pub sees_response: bool,
}

#[derive(Debug)]
pub enum Verdict {
    /// Forward; with a duty when the response must be inspected before it is answered.
    Forward(Option<Box<ResponseDuty>>),
    Deny(Denial),
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
        uuid::Uuid::from_u64_pair(self.run, n).to_string()
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

        let auth = self
            .authn
            .authenticate(facts.authorization, &enforced.issuers, enforced.revision)
            .await;
        if let AuthResult::Refused(reason) = &auth {
            tracing::debug!(%reason, method = facts.method, path, "bearer token refused");
        }
        let caller = match &auth {
            AuthResult::Verified(credential) => credential
                .subject
                .as_ref()
                .map(|subject| format!("sub:{subject}")),
            _ => None,
        };
        let request = Request {
            api: self.enforcer.api(),
            method: facts.method.to_owned(),
            path: path.to_owned(),
            source: facts.source,
            credential: auth.credential(),
            risk: None,
            device: false,
            consent: None,
        };
        let decision = evaluate(&enforced.prepared, &request);
        let matched = decision
            .matched
            .as_ref()
            .map(|m| (Some(m.api_id), Some(m.operation_id)))
            .unwrap_or((None, None));

        let inspect = !decision.obligations.response_fields.is_empty();
        // Monitor mode: the agent's (`--mode monitor`), or the API's or operation's setting.
        let monitor = self.mode == Mode::Monitor || decision.monitor;
        let denial = if decision.allow {
            match self.limits.check(&decision.obligations.rate_limits) {
                // A gateway answers with the upstream's response itself: data the caller may
                // not see could not be masked or withheld, so the request is refused.
                Ok(()) if inspect && !facts.sees_response => {
                    Some(Denial::new(403, "response_inspection_unavailable"))
                }
                Ok(()) => None,
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
            let refused_token = matches!(auth, AuthResult::Refused(_));
            // A presented token that failed verification says more than "unauthenticated".
            let code = if decision.status == 401 && refused_token && code == "unauthenticated" {
                "invalid_token"
            } else {
                code
            };
            let mut denial = Denial::new(decision.status, code);
            if denial.problem.status == 401 {
                denial.challenge = Some(if refused_token {
                    "Bearer error=\"invalid_token\""
                } else {
                    "Bearer"
                });
            }
            Some(denial)
        };
        match denial {
            None if inspect => {
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
                Verdict::Forward(Some(Box::new(ResponseDuty {
                    mask: decision.obligations.mask,
                    block: decision.obligations.block,
                    fields: decision.obligations.response_fields,
                    monitor,
                    record,
                })))
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
        let counter = match outcome {
            "allow" => &self.stats.allowed,
            "monitor" => &self.stats.monitored,
            _ => &self.stats.denied,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        record.outcome = outcome.to_owned();
        record.status = status;
        record.reason = reason.map(str::to_owned);
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
            source: facts.source.to_string(),
            caller,
            decision_micros: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        }
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
