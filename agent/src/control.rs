//! The control-plane client: enrollment, then calls signed with the agent's own key
//! (bundle fetch with ETags, heartbeat, decision uploads, the event stream). It knows the
//! wire format (`policy::agent_api`) and HTTP, nothing of what the agent does with answers.

use ed25519_dalek::SigningKey;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use policy::agent_api::{
    AgentStatus, BatchReceipt, EnrollRequest, EnrollResponse, HmacSecrets, RevisionNotice, SignedCall,
};
use policy::bundle::MAX_BUNDLE_BYTES;
use rand::RngCore;
use std::time::Duration;
use url::Url;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bundles can be large (tens of MiB) on slow links.
const BUNDLE_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_ERROR_BYTES: usize = 64 * 1024;
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// A `Retry-After` longer than this is taken as this: a control plane asking for hours
/// would otherwise stall uploads past any outage worth waiting for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Why a call did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// 401 with code `agent_revoked`: this agent is cut off.
    #[error("the control plane has revoked this agent")]
    Revoked,
    /// A 4xx with the control plane's `{code, message}`.
    #[error("refused ({status}, {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// 429 (or 503) with how long to wait.
    #[error("asked to retry in {0:?}")]
    RetryAfter(Duration),
    #[error("could not reach the control plane: {0}")]
    Transport(String),
    #[error("unexpected answer {status}: {message}")]
    Unexpected { status: u16, message: String },
}

/// What a bundle fetch found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleFetch {
    NotModified,
    /// Nothing is published for this agent.
    NoBundle,
    Bundle {
        bytes: Vec<u8>,
        etag: Option<String>,
    },
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

pub struct ControlClient {
    http: reqwest::Client,
    base: Url,
    signer: Option<(SigningKey, i64)>,
}

impl ControlClient {
    /// A client for the control plane at `base` (a path prefix is kept).
    pub fn new(base: Url) -> Result<ControlClient, String> {
        let http = reqwest::Client::builder()
            // A redirect would change the signed path; the control plane does not redirect agents.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("palisade-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(ControlClient {
            http,
            base,
            signer: None,
        })
    }

    /// Signs every later call as `agent_id` with `key`.
    pub fn signed_as(mut self, key: SigningKey, agent_id: i64) -> ControlClient {
        self.signer = Some((key, agent_id));
        self
    }

    pub fn agent_id(&self) -> Option<i64> {
        self.signer.as_ref().map(|(_, id)| *id)
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{prefix}{path}"));
        url.set_query(None);
        url
    }

    fn agent_path(&self, what: &str) -> Result<String, ControlError> {
        let id = self
            .agent_id()
            .ok_or_else(|| ControlError::Transport("the agent is not enrolled".into()))?;
        Ok(format!("/agent/v1/agents/{id}/{what}"))
    }

    /// `POST /agent/v1/enroll` (unsigned: the token is the credential).
    pub async fn enroll(&self, request: &EnrollRequest) -> Result<EnrollResponse, ControlError> {
        let body =
            serde_json::to_vec(request).map_err(|e| ControlError::Transport(e.to_string()))?;
        let response = self
            .http
            .post(self.url("/agent/v1/enroll"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(transport)?;
        let response = check(response).await?;
        json_answer(response).await
    }

    /// A signed call; `timeout` `None` for the event stream.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        headers: HeaderMap,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, ControlError> {
        let (key, agent_id) = self
            .signer
            .as_ref()
            .ok_or_else(|| ControlError::Transport("the agent is not enrolled".into()))?;
        let url = self.url(path);
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let signed = SignedCall::sign(
            key,
            *agent_id,
            method.as_str(),
            &path_and_query,
            crate::now_millis(),
            &hex::encode(nonce),
            &body,
        );
        let mut request = self
            .http
            .request(method, url)
            .headers(headers)
            .header(header::AUTHORIZATION, signed.header());
        if !body.is_empty() {
            request = request.body(body);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request.send().await.map_err(transport)?;
        check(response).await
    }

    /// `GET …/bundle`, conditional on the ETag last received.
    pub async fn fetch_bundle(&self, etag: Option<&str>) -> Result<BundleFetch, ControlError> {
        let mut headers = HeaderMap::new();
        if let Some(value) = etag.and_then(|etag| HeaderValue::from_str(etag).ok()) {
            headers.insert(header::IF_NONE_MATCH, value);
        }
        let path = self.agent_path("bundle")?;
        let response = match self
            .call(
                Method::GET,
                &path,
                Vec::new(),
                headers,
                Some(BUNDLE_TIMEOUT),
            )
            .await
        {
            Err(ControlError::Refused {
                status: 404, code, ..
            }) if code == "no_bundle" => return Ok(BundleFetch::NoBundle),
            other => other?,
        };
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(BundleFetch::NotModified);
        }
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_limited(response, MAX_BUNDLE_BYTES).await?;
        Ok(BundleFetch::Bundle { bytes, etag })
    }

    /// `POST …/status`: the heartbeat; answers the revision the agent is meant to run.
    pub async fn post_status(&self, status: &AgentStatus) -> Result<RevisionNotice, ControlError> {
        let body =
            serde_json::to_vec(status).map_err(|e| ControlError::Transport(e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let path = self.agent_path("status")?;
        let response = self
            .call(Method::POST, &path, body, headers, Some(CALL_TIMEOUT))
            .await?;
        json_answer(response).await
    }

    /// `GET …/hmac-keys`: the HMAC secrets that work now (the keyring keeps those the
    /// bundle pins).
    pub async fn fetch_hmac_keys(&self) -> Result<HmacSecrets, ControlError> {
        let path = self.agent_path("hmac-keys")?;
        let response = self
            .call(Method::GET, &path, Vec::new(), HeaderMap::new(), Some(CALL_TIMEOUT))
            .await?;
        json_answer(response).await
    }

    /// `POST …/decisions` with a gzip of JSON lines.
    pub async fn upload_decisions(&self, gzipped: Vec<u8>) -> Result<BatchReceipt, ControlError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let path = self.agent_path("decisions")?;
        let response = self
            .call(Method::POST, &path, gzipped, headers, Some(CALL_TIMEOUT))
            .await?;
        json_answer(response).await
    }

    /// `GET …/events`: the open stream, to be read chunk by chunk.
    pub async fn open_events(&self) -> Result<reqwest::Response, ControlError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        let path = self.agent_path("events")?;
        self.call(Method::GET, &path, Vec::new(), headers, None)
            .await
    }
}

fn transport(error: reqwest::Error) -> ControlError {
    // Without the URL (it is the configured control plane) but with the causes, which say
    // what actually failed (refused, DNS, TLS, timeout).
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    ControlError::Transport(text)
}

/// Passes a success (or 304) through; turns anything else into its error.
async fn check(response: reqwest::Response) -> Result<reqwest::Response, ControlError> {
    let status = response.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return Ok(response);
    }
    let retry_after = retry_after(response.headers());
    let body = read_limited(response, MAX_ERROR_BYTES)
        .await
        .unwrap_or_default();
    let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
    let (code, message) = match parsed {
        Some(error) => (error.code, error.message),
        None => (
            String::new(),
            String::from_utf8_lossy(&body).chars().take(200).collect(),
        ),
    };
    Err(match status.as_u16() {
        401 if code == "agent_revoked" => ControlError::Revoked,
        429 => ControlError::RetryAfter(retry_after.unwrap_or(Duration::from_secs(30))),
        503 if retry_after.is_some() => ControlError::RetryAfter(retry_after.unwrap_or_default()),
        400..=499 => ControlError::Refused {
            status: status.as_u16(),
            code,
            message,
        },
        _ => ControlError::Unexpected {
            status: status.as_u16(),
            message: if message.is_empty() { code } else { message },
        },
    })
}

/// `Retry-After` in seconds (the HTTP-date form is rare from an API and taken as absent).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ControlError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > limit {
            return Err(ControlError::Transport(format!(
                "the answer is larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn json_answer<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, ControlError> {
    let status = response.status().as_u16();
    let body = read_limited(response, MAX_ANSWER_BYTES).await?;
    serde_json::from_slice(&body).map_err(|e| ControlError::Unexpected {
        status,
        message: format!("not the expected JSON: {e}"),
    })
}

impl crate::spool::BatchSink for ControlClient {
    async fn upload(&self, gzipped: Vec<u8>) -> Result<(), crate::spool::UploadError> {
        use crate::spool::UploadError;
        match self.upload_decisions(gzipped).await {
            Ok(receipt) => {
                tracing::debug!(
                    accepted = receipt.accepted,
                    duplicates = receipt.duplicates,
                    "decision batch uploaded"
                );
                Ok(())
            }
            Err(ControlError::RetryAfter(wait)) => Err(UploadError::RetryAfter(wait)),
            Err(ControlError::Revoked) => Err(UploadError::Revoked),
            Err(ControlError::Refused {
                status: 401 | 403,
                message,
                ..
            }) => Err(UploadError::Refused(message)),
            Err(ControlError::Refused {
                status: 400 | 413 | 415 | 422,
                code,
                message,
            }) => Err(UploadError::Rejected(format!("{code}: {message}"))),
            Err(other) => Err(UploadError::Transient(other.to_string())),
        }
    }
}
