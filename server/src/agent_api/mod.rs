//! The agent API under `/agent/v1`: enrollment with a one-time token, then calls signed
//! with the agent's own key — the bundle meant for it (ETag / If-None-Match), a push stream
//! of revision notices (server-sent events), the status heartbeat, and decision-log
//! batches (gzip, bounded, 429 with Retry-After when the control plane is saturated).
//! Wire types live in `policy::agent_api`, shared with `palisade-agent`.

mod distribution;
mod error;
mod signed;

pub use distribution::Distribution;
pub use error::AgentError;
use signed::SignedRequest;

use app::state::AppState;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::Stream;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use policy::agent_api::{
    AgentStatus, BatchReceipt, DecisionRecord, EnrollRequest, EnrollResponse, HmacSecret, HmacSecrets, MAX_BATCH_BYTES, MAX_BATCH_INFLATED_BYTES,
    MAX_BATCH_RECORDS, RevisionNotice,
};
use std::convert::Infallible;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use store::agent_reports::{self, DecisionRow, StatusReport};
use store::agents::{self, Agent, EnrollmentRequest};
use store::audit::Actor;
use tokio::sync::Semaphore;

/// How often an open event stream re-checks that its agent is still enrolled.
const REVOCATION_CHECK: Duration = Duration::from_secs(15);
/// Decision batches stored at once; more wait their turn at the agent (429).
const CONCURRENT_BATCHES: usize = 4;
/// What a saturated control plane asks agents to wait, in seconds.
const RETRY_AFTER_SECONDS: u64 = 2;

/// What the agent routes share beside `AppState`.
#[derive(Clone)]
struct AgentApi {
    distribution: Distribution,
    batches: Arc<Semaphore>,
}

/// The `/agent/v1` routes, with the distribution refresher they need (started here, so it
/// must be called inside a Tokio runtime).
pub fn router(state: &AppState) -> Router<AppState> {
    let api = AgentApi { distribution: Distribution::start(state.db.clone()), batches: Arc::new(Semaphore::new(CONCURRENT_BATCHES)) };
    Router::new()
        .route("/agent/v1/enroll", post(enroll))
        .route("/agent/v1/agents/{id}/bundle", get(bundle))
        .route("/agent/v1/agents/{id}/events", get(events))
        .route("/agent/v1/agents/{id}/status", post(status))
        .route("/agent/v1/agents/{id}/decisions", post(decisions))
        .route("/agent/v1/agents/{id}/hmac-keys", get(hmac_keys))
        .route(
            "/agent/v1/{*rest}",
            axum::routing::any(|| async { AgentError::new(StatusCode::NOT_FOUND, "not_found", "no such agent API route") }),
        )
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .layer(Extension(api))
}

fn json_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, AgentError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(';').next().is_some_and(|kind| kind.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return Err(AgentError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send application/json"));
    }
    serde_json::from_slice(body).map_err(|error| AgentError::invalid(format!("the body is not valid: {error}")))
}

/// `POST /agent/v1/enroll`: spends an enrollment token; answers the agent's id, labels and
/// the bundle keys to trust. Unsigned: the token is the credential.
async fn enroll(State(state): State<AppState>, headers: HeaderMap, request: axum::extract::Request) -> Result<Response, AgentError> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| AgentError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "an enrollment is a few hundred bytes"))?;
    let asked: EnrollRequest = json_body(&headers, &body)?;
    let context = app::auth::ssr::audit_context_for(&headers, &parts.extensions, Actor::system("agent enrollment"));
    let request = EnrollmentRequest { token: asked.token, public_key: asked.public_key, name: asked.name, version: asked.version };
    let agent = agents::enroll(&state.db, &request, &context).await.map_err(|error| match error {
        store::StoreError::Invalid { field: "token", message } => {
            AgentError::new(StatusCode::UNAUTHORIZED, "enrollment_refused", format!("the enrollment token {message}"))
        }
        other => other.into(),
    })?;
    // The agent must learn a bundle key now, even before the first bundle exists: later
    // keys reach it only announced inside bundles signed by one it already trusts.
    store::signing::ensure_signer(&state.db, &state.master, store::signing::KeyPurpose::Bundle, &context).await?;
    let trusted_keys = app::publishing::ssr::announced_keys(&state.db).await?;
    tracing::info!(agent = agent.id, name = %agent.name, "agent enrolled");
    let response = EnrollResponse { agent_id: agent.id, name: agent.name, labels: agent.labels, trusted_keys };
    Ok((StatusCode::CREATED, Json(response)).into_response())
}

/// `GET /agent/v1/agents/{id}/bundle`: the signed bundle meant for the agent; 304 when its
/// `If-None-Match` names it already, 404 `no_bundle` while nothing is published for it.
async fn bundle(State(state): State<AppState>, Extension(api): Extension<AgentApi>, call: SignedRequest) -> Result<Response, AgentError> {
    let (agent, headers) = (call.agent, call.headers);
    let snapshot = api.distribution.snapshot().await;
    let Some(revision) = snapshot.meant_for(&agent.labels) else {
        return Err(AgentError::new(StatusCode::NOT_FOUND, "no_bundle", "no bundle is published for this agent's labels yet"));
    };
    let etag = format!("\"{revision}\"");
    let etag_value = HeaderValue::from_str(&etag).map_err(|_| AgentError::internal())?;
    let unchanged = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let signed = api.distribution.signed(&state.db, revision).await?;
    let revision_header = HeaderValue::from(revision);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (http::HeaderName::from_static("x-palisade-revision"), revision_header),
        ],
        signed.to_string(),
    )
        .into_response())
}

/// `GET /agent/v1/agents/{id}/hmac-keys`: the secrets of the HMAC keys that work now, so
/// the agent verifies signatures. Signed like every call (only an enrolled, unrevoked
/// agent asking for itself); never cached. The agent keeps a secret only when its signed
/// bundle names the secret's digest, so what this answers cannot widen what it accepts.
async fn hmac_keys(State(state): State<AppState>, call: SignedRequest) -> Result<Response, AgentError> {
    let keys = store::client_apps::active_hmac_keys(&state.db, &state.master).await?;
    let secrets = HmacSecrets {
        keys: keys.into_iter().map(|key| HmacSecret { key_id: key.key_id, secret: String::from_utf8_lossy(&key.secret).into_owned() }).collect(),
    };
    tracing::debug!(agent = call.agent.id, keys = secrets.keys.len(), "HMAC secrets handed to an agent");
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(secrets)).into_response())
}

/// `GET /agent/v1/agents/{id}/events`: server-sent events. `revision` at once and whenever
/// the revision meant for the agent changes; `revoked` (then the end) once it is revoked.
async fn events(
    State(state): State<AppState>,
    Extension(api): Extension<AgentApi>,
    call: SignedRequest,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AgentError> {
    let agent = call.agent;
    // Wait for the first load, so the first notice is true.
    api.distribution.snapshot().await;
    let stream = notices(state.db.clone(), api.distribution.subscribe(), agent);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct Watch {
    db: store::Db,
    snapshots: tokio::sync::watch::Receiver<Arc<distribution::Snapshot>>,
    agent: Agent,
    /// `None` before the first notice.
    sent: Option<Option<i64>>,
    ended: bool,
}

fn notices(db: store::Db, snapshots: tokio::sync::watch::Receiver<Arc<distribution::Snapshot>>, agent: Agent) -> impl Stream<Item = Result<Event, Infallible>> {
    let watch = Watch { db, snapshots, agent, sent: None, ended: false };
    futures::stream::unfold(watch, |mut watch| async move {
        if watch.ended {
            return None;
        }
        loop {
            let meant = watch.snapshots.borrow_and_update().meant_for(&watch.agent.labels);
            if watch.sent != Some(meant) {
                watch.sent = Some(meant);
                let event = Event::default().event("revision").json_data(RevisionNotice { revision: meant }).ok()?;
                return Some((Ok(event), watch));
            }
            let open = tokio::select! {
                changed = watch.snapshots.changed() => changed.is_ok(),
                () = tokio::time::sleep(REVOCATION_CHECK) => true,
            };
            if !open {
                // The server is shutting down: the agent reconnects elsewhere.
                return None;
            }
            let revoked = agents::find_agent(&watch.db, watch.agent.id).await.is_ok_and(|agent| agent.revoked_at.is_some());
            if revoked {
                watch.ended = true;
                let event = Event::default().event("revoked").data("this agent has been revoked");
                return Some((Ok(event), watch));
            }
        }
    })
}

/// `POST /agent/v1/agents/{id}/status`: the heartbeat. Answers the revision the agent is
/// meant to run, so a missed notice is caught up at the next beat.
async fn status(
    State(state): State<AppState>,
    Extension(api): Extension<AgentApi>,
    call: SignedRequest,
) -> Result<Json<RevisionNotice>, AgentError> {
    let agent = call.agent;
    let reported: AgentStatus = json_body(&call.headers, &call.body)?;
    let report = StatusReport {
        version: reported.version,
        active_revision: reported.active_revision,
        bundle_hash: reported.bundle_hash,
        last_error: reported.last_error,
        uptime_seconds: reported.uptime_seconds,
        counters: reported.counters,
        spooled_decisions: reported.spooled_decisions,
    };
    agent_reports::record_status(&state.db, agent.id, &report).await?;
    let revision = api.distribution.snapshot().await.meant_for(&agent.labels);
    Ok(Json(RevisionNotice { revision }))
}

/// `POST /agent/v1/agents/{id}/decisions`: a gzip batch of JSON lines. Bounded before and
/// after inflating; stored whole or not at all; 429 with Retry-After while saturated.
async fn decisions(
    State(state): State<AppState>,
    Extension(api): Extension<AgentApi>,
    call: SignedRequest,
) -> Result<Json<BatchReceipt>, AgentError> {
    let (agent, headers, body) = (call.agent, call.headers, call.body);
    let gzip = headers.get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok()).is_some_and(|value| value.trim() == "gzip");
    if !gzip {
        return Err(AgentError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send the batch gzip-compressed"));
    }
    let Ok(_permit) = api.batches.clone().try_acquire_owned() else {
        return Err(AgentError::busy(RETRY_AFTER_SECONDS));
    };
    let records = inflate_batch(&body)?;
    let rows: Vec<DecisionRow> = records.into_iter().map(row_of).collect();
    let (accepted, duplicates) = agent_reports::insert_decisions(&state.db, agent.id, &rows).await?;
    Ok(Json(BatchReceipt { accepted, duplicates }))
}

fn inflate_batch(body: &[u8]) -> Result<Vec<DecisionRecord>, AgentError> {
    let mut text = Vec::new();
    let limit = MAX_BATCH_INFLATED_BYTES as u64;
    flate2::read::GzDecoder::new(body)
        .take(limit + 1)
        .read_to_end(&mut text)
        .map_err(|_| AgentError::invalid("the batch is not valid gzip"))?;
    if text.len() as u64 > limit {
        return Err(AgentError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the batch inflates past 16 MiB: send smaller batches"));
    }
    let mut records = Vec::new();
    for (number, line) in text.split(|byte| *byte == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if records.len() == MAX_BATCH_RECORDS {
            return Err(AgentError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "a batch holds at most 5,000 records"));
        }
        let record: DecisionRecord = serde_json::from_slice(line)
            .map_err(|error| AgentError::invalid(format!("line {} is not a decision record: {error}", number + 1)))?;
        records.push(record);
    }
    Ok(records)
}

fn row_of(record: DecisionRecord) -> DecisionRow {
    DecisionRow {
        record_id: record.id,
        decided_at: record.at,
        revision: record.revision,
        method: record.method,
        path: record.path,
        api_id: record.api_id,
        operation_id: record.operation_id,
        outcome: record.outcome,
        status: i64::from(record.status),
        reason: record.reason,
        source: record.source,
        caller: record.caller,
        decision_micros: i64::try_from(record.decision_micros).unwrap_or(i64::MAX),
    }
}
