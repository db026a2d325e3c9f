//! How a proxied request reaches the upstream: its address parsed once, each HTTP/1.1
//! caller connection's own upstream connection (driven by the caller connection's task),
//! each HTTP/2 caller connection's own pool, one shared multiplexed connection when the
//! upstream is spoken to in HTTP/2, and a connection of its own for each protocol switch
//! (WebSocket).

use crate::preface::Protocol;
use crate::timeouts::{Sending, Sent, answer_within};
use axum::body::Body;
use http::{HeaderValue, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Context;
use std::time::Duration;
use url::Url;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
type UpstreamConnection = hyper::client::conn::http1::Connection<
    hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>,
    Body,
>;

/// Requests made over a pool of connections the client keeps: an HTTP/2 caller's (its
/// own pool of HTTP/1.1 connections) or the HTTP/2 upstream's (one multiplexed connection).
type Pool = Client<HttpsConnector<HttpConnector>, Body>;

/// Connections to the upstream: plain or TLS (Mozilla's roots), in `protocol` (over TLS,
/// the only one ALPN offers).
fn connector(protocol: Protocol) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.set_nodelay(true);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http();
    match protocol {
        Protocol::Http1 => builder.enable_http1().wrap_connector(http),
        Protocol::Http2 => builder.enable_http2().wrap_connector(http),
    }
}

/// How one caller connection's requests reach the upstream (when it is spoken to in
/// HTTP/1.1; over HTTP/2 every request goes over the upstream's shared connection).
pub enum UpstreamLink {
    /// An HTTP/1.1 caller's requests, one at a time, over the connection's own.
    Own(UpstreamSlot),
    /// An HTTP/2 caller's requests, side by side, over a pool of connections that is the
    /// caller connection's alone, and closes with it.
    Pooled(Box<Pool>),
}

impl UpstreamLink {
    /// See [`UpstreamSlot::drive`]; a pool's connections are tasks of their own.
    pub fn drive(&self, cx: &mut Context<'_>) {
        if let UpstreamLink::Own(slot) = self {
            slot.drive(cx);
        }
    }
}

/// One caller connection's own upstream connection. An HTTP/1.1 caller sends one request
/// at a time, so its requests go one after another over a connection kept for it: no pool
/// to look in and hand back to on every request (a sixth of the proxy's own work per
/// request), and no upstream connection shared between callers, so nothing one caller
/// sends can leave a connection in a state another caller's request then meets (request
/// smuggling, response queue poisoning). It closes with the caller's connection.
///
/// The connection is not a task of its own: the caller connection's task drives it
/// ([`UpstreamSlot::drive`]), so a request and its answer never wait for another task to
/// be scheduled (with a task of its own, every request woke it and every answer woke the
/// caller's task back).
#[derive(Default)]
pub struct UpstreamSlot(Mutex<Slot>);

#[derive(Default)]
struct Slot {
    /// Where requests are handed to the connection; taken while one is on its way.
    sender: Option<SendRequest<Body>>,
    /// The connection itself: it writes the requests and reads the answers when driven.
    connection: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl UpstreamSlot {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Option<SendRequest<Body>> {
        self.lock().sender.take()
    }

    fn put(&self, sender: SendRequest<Body>) {
        self.lock().sender = Some(sender);
    }

    /// Closes the connection: a request on it has gone unanswered for too long, so an
    /// answer it might still bring belongs to no one.
    fn close(&self) {
        let mut slot = self.lock();
        slot.sender = None;
        slot.connection = None;
    }

    /// Keeps a newly opened connection; one it replaces is closed.
    fn open(&self, connection: impl Future<Output = ()> + Send + 'static) {
        self.lock().connection = Some(Box::pin(connection));
    }

    /// Lets the upstream connection do what it can (write a request handed to it, read
    /// an answer that has come), and arranges for `cx`'s task to be woken when it can do
    /// more. The caller connection's task calls it whenever it is woken.
    pub fn drive(&self, cx: &mut Context<'_>) {
        let mut slot = self.lock();
        if let Some(connection) = slot.connection.as_mut()
            && connection.as_mut().poll(cx).is_ready()
        {
            slot.connection = None;
        }
    }
}

impl std::fmt::Debug for UpstreamSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamSlot")
    }
}

/// The upstream, parsed once: every request's URI is made from these parts.
pub struct Upstream {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The upstream's path prefix without its trailing `/` (often empty).
    prefix: String,
    /// The authority, as the `Host` sent.
    host: HeaderValue,
    connector: HttpsConnector<HttpConnector>,
    /// The multiplexed connection every request shares when the upstream is spoken to in
    /// HTTP/2.
    http2: Option<Pool>,
    /// How long the upstream has to answer a request that has reached it.
    answer_limit: Duration,
}

impl Upstream {
    pub fn new(url: &Url, protocol: Protocol, answer_limit: Duration) -> Result<Upstream, String> {
        let (prefix, authority) = upstream_parts(url)?;
        let invalid = |what: &str| format!("the upstream URL {url} has an invalid {what}");
        let connector = connector(protocol);
        let http2 = (protocol == Protocol::Http2).then(|| {
            Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .http2_only(true)
                .build(connector.clone())
        });
        Ok(Upstream {
            scheme: url.scheme().parse().map_err(|_| invalid("scheme"))?,
            authority: authority.parse().map_err(|_| invalid("host or port"))?,
            prefix,
            host: HeaderValue::from_str(&authority).map_err(|_| invalid("host or port"))?,
            connector,
            http2,
            answer_limit,
        })
    }

    /// Whether the upstream is spoken to in HTTP/2 (it then takes no protocol switch).
    pub fn speaks_http2(&self) -> bool {
        self.http2.is_some()
    }

    /// How the requests of a caller connection in `protocol` will reach the upstream.
    pub fn link(&self, protocol: Protocol) -> UpstreamLink {
        match protocol {
            Protocol::Http2 if self.http2.is_none() => {
                UpstreamLink::Pooled(Box::new(Client::builder(TokioExecutor::new()).timer(TokioTimer::new()).build(self.connector.clone())))
            }
            _ => UpstreamLink::Own(UpstreamSlot::default()),
        }
    }

    /// The `Host` sent upstream.
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// The upstream's path (with the query) for a request target: the request line a
    /// connection of the agent's own sends (origin form, RFC 9112 §3.2.1).
    pub fn path(&self, target: &http::uri::PathAndQuery) -> Result<Uri, http::Error> {
        let path_and_query = if self.prefix.is_empty() {
            // The caller's bytes, shared rather than copied.
            target.clone()
        } else {
            format!("{}{}", self.prefix, target.as_str()).parse()?
        };
        Ok(Uri::from(path_and_query))
    }

    /// `path` with the upstream's scheme and authority; with the path `/`, where a
    /// connection is opened.
    fn absolute(&self, path: &Uri) -> Result<Uri, http::Error> {
        let path_and_query = path.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }

    /// Sends a request whose headers are ready to `path` ([`Upstream::path`]) the way
    /// `link` says, or over the shared HTTP/2 connection. On a caller connection's own
    /// upstream connection, one is opened when there is none or the upstream has closed it;
    /// a request a closing connection never took is sent once more over a new one, one it
    /// took is not (it may have been carried out); pools do the same. Fails with
    /// [`TimedOut`](crate::timeouts::TimedOut) when the upstream has not answered within its
    /// limit of the request's last bytes reaching it; a connection of the caller's own is
    /// then closed (a pool's, by the request given up; HTTP/2 resets the stream).
    pub async fn send(&self, link: &UpstreamLink, mut parts: http::request::Parts, body: Body, path: Uri) -> Result<http::Response<Incoming>, BoxError> {
        // A body still to come is watched as it goes, so a long upload has its time.
        let sending = (!hyper::body::Body::is_end_stream(&body)).then(Sending::new);
        let body = match &sending {
            Some(sending) => Body::new(Sent::new(body, sending.clone())),
            None => body,
        };
        let pool = match (&self.http2, link) {
            (Some(http2), _) => http2,
            (None, UpstreamLink::Pooled(pool)) => pool,
            (None, UpstreamLink::Own(slot)) => {
                parts.uri = path;
                let request = http::Request::from_parts(parts, body);
                return match answer_within(self.answer_limit, sending.as_deref(), self.send_over(slot, request)).await {
                    Ok(answered) => answered,
                    Err(timed_out) => {
                        slot.close();
                        Err(Box::new(timed_out))
                    }
                };
            }
        };
        // A pool is asked in absolute form: it picks (or opens) a connection by it.
        parts.uri = self.absolute(&path)?;
        if self.http2.is_some() {
            // The authority goes as `:authority`.
            parts.version = http::Version::HTTP_2;
            parts.headers.remove(http::header::HOST);
        }
        let answer = pool.request(http::Request::from_parts(parts, body));
        Ok(answer_within(self.answer_limit, sending.as_deref(), answer).await??)
    }

    async fn send_over(&self, slot: &UpstreamSlot, mut request: http::Request<Body>) -> Result<http::Response<Incoming>, BoxError> {
        // Ready once the previous answer's body has been read to its end.
        let mut kept = match slot.take() {
            Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
            None => None,
        };
        loop {
            let fresh = kept.is_none();
            let mut sender = match kept.take() {
                Some(sender) => sender,
                None => {
                    let (sender, connection) = self.connect().await?;
                    slot.open(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, "an upstream connection ended with an error");
                        }
                    });
                    sender
                }
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    slot.put(sender);
                    return Ok(response);
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if !fresh => request = unsent,
                    _ => return Err(error.into_error().into()),
                },
            }
        }
    }

    /// Sends a request that asks to switch protocols (`Upgrade`, as WebSocket does) over a
    /// connection of its own: if the upstream agrees (101), that connection becomes the
    /// tunnel, so it can never be anyone's again.
    pub async fn send_upgrade(&self, mut parts: http::request::Parts, body: Body, path: Uri) -> Result<http::Response<Incoming>, BoxError> {
        parts.uri = path;
        let (mut sender, connection) = self.connect().await?;
        // A task of its own: on a 101 it hands the connection over to the tunnel
        // ([`hyper::upgrade::on`]), which outlives the caller connection's HTTP.
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "an upstream connection ended with an error");
            }
        });
        let answer = sender.send_request(http::Request::from_parts(parts, body));
        Ok(answer_within(self.answer_limit, None, answer).await??)
    }

    /// Opens a connection to the upstream: where requests are handed to it, and the
    /// connection, which does nothing until driven.
    async fn connect(&self) -> Result<(SendRequest<Body>, UpstreamConnection), BoxError> {
        let origin = self.absolute(&Uri::from_static("/"))?;
        let io = tower::ServiceExt::oneshot(self.connector.clone(), origin).await?;
        Ok(hyper::client::conn::http1::handshake(io).await?)
    }
}

/// The path prefix (no trailing `/`) and the authority of an upstream URL.
fn upstream_parts(upstream: &Url) -> Result<(String, String), String> {
    // `host_str` gives an IPv6 address in brackets, as an authority needs it.
    let host = upstream.host_str().ok_or("the upstream URL has no host")?;
    let authority = match upstream.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Ok((upstream.path().trim_end_matches('/').to_owned(), authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_uri_keeps_its_prefix() {
        let uri = |upstream: &str, target: &'static str| {
            let upstream = Upstream::new(&upstream.parse().unwrap(), Protocol::Http1, Duration::from_secs(60)).unwrap();
            let path = upstream.path(&http::uri::PathAndQuery::from_static(target)).unwrap();
            assert!(path.scheme().is_none() && path.authority().is_none(), "origin form on the agent's own connections");
            (upstream.absolute(&path).unwrap().to_string(), upstream.host.clone())
        };
        assert_eq!(uri("http://127.0.0.1:9000", "/a?b=1"), ("http://127.0.0.1:9000/a?b=1".into(), HeaderValue::from_static("127.0.0.1:9000")));
        assert_eq!(uri("https://api.internal/v2/", "/pets"), ("https://api.internal/v2/pets".into(), HeaderValue::from_static("api.internal")));
        assert_eq!(uri("http://[::1]:81/", "/"), ("http://[::1]:81/".into(), HeaderValue::from_static("[::1]:81")));
    }
}
