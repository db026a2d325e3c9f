//! The optional HTTP sink: the audit trail POSTed in order, as JSON Lines batches, to a
//! webhook (a SIEM's collector). Delivery is at least once; every line carries its sequence
//! number so a receiver can drop repeats. The cursor lives in the database, so a webhook
//! that is down, slow or restarting loses nothing: delivery resumes where it stopped.

use crate::audit_export::{encode_lines, next_lines};
use std::time::Duration;
use store::Db;
use store::audit_sinks::{self, SinkCursor};

/// Lines per request.
const BATCH: i64 = 200;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub struct Webhook {
    url: String,
    token: Option<String>,
    /// The cursor's name: the URL without query or fragment, which may hold credentials.
    sink_id: String,
    client: reqwest::Client,
}

impl Webhook {
    pub fn new(url: String, token: Option<String>) -> Result<Webhook, String> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            // A redirect would send the trail (and the token) somewhere not configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("palisade-audit-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("audit webhook client: {e}"))?;
        let without_query = url.split(['?', '#']).next().unwrap_or_default();
        Ok(Webhook { sink_id: format!("webhook {without_query}"), url, token, client })
    }

    /// Posts everything the webhook has not acknowledged yet; returns how many lines.
    pub async fn deliver_once(&self, db: &Db) -> Result<usize, String> {
        let mut delivered = 0;
        loop {
            let cursor: SinkCursor = audit_sinks::find_sink_cursor(db, &self.sink_id).await.map_err(|e| e.to_string())?;
            let (lines, next) = next_lines(db, cursor, BATCH).await?;
            if lines.is_empty() {
                return Ok(delivered);
            }
            let mut request = self
                .client
                .post(&self.url)
                .header(http::header::CONTENT_TYPE, "application/x-ndjson")
                .body(encode_lines(&lines));
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.map_err(|e| format!("audit webhook: {}", without_url(&e)))?;
            if !response.status().is_success() {
                return Err(format!("audit webhook answered {}", response.status()));
            }
            audit_sinks::update_sink_cursor(db, &self.sink_id, next).await.map_err(|e| e.to_string())?;
            delivered += lines.len();
        }
    }
}

/// reqwest's error text names the URL, which may carry a secret in its query.
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    kind.to_owned()
}

/// Delivers every second while the webhook is healthy, and backs off (doubling to a
/// minute) while it is not, warning once per outage.
pub fn spawn(db: Db, webhook: Webhook) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        let mut outage = crate::outage::Outage::new("audit webhook");
        loop {
            let failing = outage.record(&webhook.deliver_once(&db).await);
            backoff = if failing { (backoff * 2).min(MAX_BACKOFF) } else { Duration::from_secs(1) };
            tokio::time::sleep(backoff).await;
        }
    });
}
