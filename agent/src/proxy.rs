//! The two ways requests reach a decision: the reverse proxy (decide, then stream the
//! request to the upstream and its answer back) and the decision endpoint for gateways
//! (nginx `auth_request`: `GET|POST /decide` with `X-Original-Method`, `X-Original-URI`
//! and `X-Real-IP`, answered 200 or with the denial).
//!
//! The proxy trusts only the socket for the caller's address; the decision endpoint trusts
//! `X-Real-IP` because only the gateway is meant to reach it.

use crate::decide::{BodyDuty, Decider, Denial, Facts, Inspected, ReadBody, Verdict};
use axum::body::Bytes;
use http_body_util::BodyExt;
use crate::problem::Problem;
use crate::tls::TlsPeer;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::get;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Uri, Version};
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::TcpListener;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use url::Url;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connections to the upstream: plain or TLS (Mozilla's roots), HTTP/1.1.
fn upstream_connector() -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.set_nodelay(true);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

/// A pooled upstream client, for requests that come without a connection of their own
/// (HTTP/2 callers, whose requests run side by side on one connection).
pub fn upstream_client() -> UpstreamClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(upstream_connector())
}

/// One caller connection's own upstream connection. An HTTP/1.1 caller sends one request
/// at a time, so its requests go one after another over a connection kept for it: no pool
/// to look in and hand back to on every request (a sixth of the proxy's own work per
/// request), and no upstream connection shared between callers, so nothing one caller
/// sends can leave a connection in a state another caller's request then meets (request
/// smuggling, response queue poisoning). It closes with the caller's connection.
#[derive(Clone, Default)]
pub struct UpstreamSlot(Arc<std::sync::Mutex<Option<SendRequest<Body>>>>);

impl UpstreamSlot {
    fn take(&self) -> Option<SendRequest<Body>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    fn put(&self, sender: SendRequest<Body>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sender);
    }
}

impl std::fmt::Debug for UpstreamSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamSlot")
    }
}

/// What the proxy knows of a plain-TCP caller connection: the caller's address, and the
/// connection's own upstream connection.
#[derive(Clone, Debug)]
pub struct Downstream {
    pub address: SocketAddr,
    pub upstream: UpstreamSlot,
}

/// A TCP listener whose connections send what is written at once (`TCP_NODELAY`, as
/// nginx sets it): Nagle's algorithm would hold an answer back until the caller
/// acknowledged the last one.
pub struct NoDelayListener(pub TcpListener);

impl Listener for NoDelayListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, address) = Listener::accept(&mut self.0).await;
        let _ = stream.set_nodelay(true);
        (stream, address)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Listener::local_addr(&self.0)
    }
}

impl Connected<IncomingStream<'_, NoDelayListener>> for Downstream {
    fn connect_info(stream: IncomingStream<'_, NoDelayListener>) -> Self {
        Downstream { address: *stream.remote_addr(), upstream: UpstreamSlot::default() }
    }
}

pub struct Proxy {
    decider: Arc<Decider>,
    client: UpstreamClient,
    connector: HttpsConnector<HttpConnector>,
    upstream: Upstream,
}

/// Where requests go, parsed once: every request's URI is made from these parts.
struct Upstream {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The upstream's path prefix without its trailing `/` (often empty).
    prefix: String,
    /// The authority, as the `Host` sent.
    host: HeaderValue,
}

impl Upstream {
    /// The upstream's path (with the query) for a request target: the request line a
    /// connection of the agent's own sends (origin form, RFC 9112 §3.2.1).
    fn path(&self, target: &http::uri::PathAndQuery) -> Result<Uri, http::Error> {
        let path_and_query = if self.prefix.is_empty() {
            // The caller's bytes, shared rather than copied.
            target.clone()
        } else {
            format!("{}{}", self.prefix, target.as_str()).parse()?
        };
        Ok(Uri::from(path_and_query))
    }

    /// `path` with the upstream's scheme and authority: what the pool is asked for, and
    /// (with the path `/`) where a connection is opened.
    fn absolute(&self, path: &Uri) -> Result<Uri, http::Error> {
        let path_and_query = path.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        Ok(Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()?)
    }
}

impl Proxy {
    pub fn new(
        decider: Arc<Decider>,
        upstream: &Url,
        client: UpstreamClient,
    ) -> Result<Proxy, String> {
        let (prefix, authority) = upstream_parts(upstream)?;
        let invalid = |what: &str| format!("the upstream URL {upstream} has an invalid {what}");
        let upstream = Upstream {
            scheme: upstream.scheme().parse().map_err(|_| invalid("scheme"))?,
            authority: authority.parse().map_err(|_| invalid("host or port"))?,
            prefix,
            host: HeaderValue::from_str(&authority).map_err(|_| invalid("host or port"))?,
        };
        Ok(Proxy {
            decider,
            client,
            connector: upstream_connector(),
            upstream,
        })
    }

    async fn handle(&self, request: Request) -> Response {
        // Plain HTTP gives the socket address; TLS also the client certificate's identities.
        let tls = request.extensions().get::<ConnectInfo<TlsPeer>>().map(|info| info.0.clone());
        let peer = tls.as_ref().map(|tls| tls.address).or_else(|| {
            let extensions = request.extensions();
            extensions
                .get::<ConnectInfo<Downstream>>()
                .map(|info| info.0.address)
                .or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0))
        });
        let source = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| {
            peer.ip().to_canonical()
        });
        let identities = tls.map(|tls| tls.identities).unwrap_or_default();
        // Shared, not copied: the request is changed below while these are still read.
        let target = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let method = request.method().clone();
        let facts = Facts {
            method: method.as_str(),
            target: target.as_str(),
            source,
            headers: request.headers(),
            peer_identities: &identities,
            sees_response: true,
        };
        let verdict = self.decider.decide(&facts).await;
        let mut request = request;
        let headers = request.headers_mut();
        self.decider.enforcer.with_current(|enforced| crate::api_keys::strip(headers, &enforced.api_key_headers));
        let (verdict, request) = match verdict {
            Verdict::CheckBody(duty) => self.check_body(*duty, request).await,
            verdict => (verdict, request),
        };
        match verdict {
            Verdict::Deny(denial) => denial.response(),
            // Settled above.
            Verdict::CheckBody(_) => Problem::new(500, "contract_unavailable").response(),
            Verdict::Forward(None) => self.forward(request, &target, source).await,
            Verdict::Forward(Some(duty)) => {
                let (mut parts, body) = request.into_parts();
                // A compressed answer could not be read: ask the upstream for plain text.
                parts.headers.remove(header::ACCEPT_ENCODING);
                let request = Request::from_parts(parts, body);
                let response = self.forward(request, &target, source).await;
                if response.extensions().get::<UpstreamFailed>().is_some() {
                    self.decider
                        .finish_inspected(*duty, &Inspected::Clean)
                        .await;
                    return response;
                }
                crate::inspect::apply(&self.decider, *duty, response).await
            }
        }
    }

    /// Reads the body (at most the contract's bound), checks it, and hands the request back
    /// with the bytes read, for forwarding.
    async fn check_body(&self, duty: BodyDuty, request: Request) -> (Verdict, Request) {
        let (parts, body) = request.into_parts();
        let max = duty.max_body_bytes();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        // Refused unread when it says it is too large; else read up to the bound.
        let read = if declared.is_some_and(|length| length > max as u64) {
            Err(true)
        } else {
            match http_body_util::Limited::new(body, max).collect().await {
                Ok(collected) => Ok(collected.to_bytes()),
                Err(error) => Err(error.is::<http_body_util::LengthLimitError>()),
            }
        };
        let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let (verdict, bytes) = match read {
            Ok(bytes) => {
                let verdict = self.decider.finish_body(duty, ReadBody::Read { content_type, body: &bytes }).await;
                (verdict, bytes)
            }
            Err(too_large) => {
                let read = if too_large { ReadBody::TooLarge } else { ReadBody::Unreadable };
                (self.decider.finish_body(duty, read).await, Bytes::new())
            }
        };
        (verdict, Request::from_parts(parts, Body::from(bytes)))
    }

    async fn forward(&self, request: Request, target: &http::uri::PathAndQuery, source: IpAddr) -> Response {
        let (mut parts, body) = request.into_parts();
        let Ok(path) = self.upstream.path(target) else {
            return not_forwarded(Problem::new(400, "bad_request").response());
        };
        let original_host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()));
        strip_hop_by_hop(&mut parts.headers);
        let tls = parts.extensions.get::<ConnectInfo<TlsPeer>>();
        let scheme = if tls.is_some() { "https" } else { "http" };
        // HTTP/2 callers send requests side by side on one connection: they use the pool.
        let slot = tls
            .map(|info| info.0.upstream.clone())
            .or_else(|| parts.extensions.get::<ConnectInfo<Downstream>>().map(|info| info.0.upstream.clone()))
            .filter(|_| parts.version <= Version::HTTP_11);
        add_forwarding(&mut parts.headers, source, original_host.as_deref(), scheme);
        parts.headers.insert(header::HOST, self.upstream.host.clone());
        // The upstream client speaks HTTP/1.1 whatever the caller spoke.
        parts.version = Version::HTTP_11;
        let answered = match slot {
            Some(slot) => {
                parts.uri = path;
                self.send_on(&slot, http::Request::from_parts(parts, body)).await
            }
            None => match self.upstream.absolute(&path) {
                Ok(uri) => {
                    parts.uri = uri;
                    self.client.request(http::Request::from_parts(parts, body)).await.map_err(BoxError::from)
                }
                Err(error) => Err(error.into()),
            },
        };
        match answered {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Body::new(body))
            }
            Err(error) => {
                self.decider.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %error, "the upstream is unreachable");
                self.decider
                    .stats
                    .set_last_error(format!("upstream unreachable: {error}"));
                not_forwarded(Problem::new(502, "upstream_unavailable").response())
            }
        }
    }
}

impl Proxy {
    /// Sends `request` over the caller connection's own upstream connection, opening one
    /// when there is none or the upstream has closed it. A request a closing connection
    /// never took is sent once more over a new one; one it took is not (it may have been
    /// carried out).
    async fn send_on(&self, slot: &UpstreamSlot, mut request: http::Request<Body>) -> Result<http::Response<hyper::body::Incoming>, BoxError> {
        // Ready once the previous answer's body has been read to its end.
        let mut kept = match slot.take() {
            Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
            None => None,
        };
        loop {
            let fresh = kept.is_none();
            let mut sender = match kept.take() {
                Some(sender) => sender,
                None => self.connect().await?,
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

    async fn connect(&self) -> Result<SendRequest<Body>, BoxError> {
        let origin = self.upstream.absolute(&Uri::from_static("/"))?;
        let io = tower::ServiceExt::oneshot(self.connector.clone(), origin).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "an upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Marks an answer the agent made because the request never reached the upstream: there
/// is no upstream response to inspect.
#[derive(Clone, Copy, Debug)]
struct UpstreamFailed;

fn not_forwarded(mut response: Response) -> Response {
    response.extensions_mut().insert(UpstreamFailed);
    response
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

/// The reverse proxy: every method and path.
pub fn router(proxy: Arc<Proxy>) -> Router {
    Router::new()
        .fallback(
            |State(proxy): State<Arc<Proxy>>, request: Request| async move {
                proxy.handle(request).await
            },
        )
        .with_state(proxy)
}

/// Whether a header describes one connection, not the message: never forwarded (RFC 9110
/// §7.6.1).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "proxy-authenticate" | "proxy-authorization" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    )
}

/// Removes hop-by-hop headers, including those the `Connection` header names. Only the
/// names present are removed: each removal hashes its name, and most messages carry one
/// (`Connection`) or none.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present: Vec<HeaderName> = headers.keys().filter(|name| is_hop_by_hop(name)).cloned().collect();
    if present.is_empty() {
        return;
    }
    let named = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok());
    present.extend(named);
    for name in present {
        headers.remove(name);
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// `X-Forwarded-For` (appended), `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded`
/// (appended, RFC 7239); `scheme` is how the caller reached the agent (`http`, `https`).
pub fn add_forwarding(headers: &mut HeaderMap, source: IpAddr, original_host: Option<&str>, scheme: &'static str) {
    let client = crate::ip_text(source);
    let chain = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(previous) if !previous.trim().is_empty() => [previous, ", ", &client].concat(),
        _ => client.clone(),
    };
    if let Ok(value) = HeaderValue::try_from(chain) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    // A host is quoted only when it is plainly a host (letters, digits, `.-:[]`); anything
    // else is left out rather than escaped into a header the upstream might misread.
    let host = original_host.filter(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    });
    match host.and_then(|h| HeaderValue::from_str(h).ok()) {
        Some(value) => {
            headers.insert(X_FORWARDED_HOST, value);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
    let previous = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .filter(|previous| !previous.trim().is_empty());
    let mut forwarded = String::with_capacity(64 + previous.map_or(0, str::len));
    if let Some(previous) = previous {
        forwarded.push_str(previous);
        forwarded.push_str(", ");
    }
    forwarded.push_str("for=");
    match source {
        IpAddr::V4(_) => forwarded.push_str(&client),
        IpAddr::V6(_) => {
            forwarded.push_str("\"[");
            forwarded.push_str(&client);
            forwarded.push_str("]\"");
        }
    }
    forwarded.push_str(";proto=");
    forwarded.push_str(scheme);
    if let Some(host) = host {
        forwarded.push_str(";host=\"");
        forwarded.push_str(host);
        forwarded.push('"');
    }
    if let Ok(value) = HeaderValue::try_from(forwarded) {
        headers.insert(header::FORWARDED, value);
    }
}

/// The gateway decision endpoint: `GET|POST /decide` and any path under it.
pub fn decision_router(decider: Arc<Decider>) -> Router {
    Router::new()
        .route("/decide", get(decide).post(decide))
        .route("/decide/{*rest}", get(decide).post(decide))
        .with_state(decider)
}

async fn decide(State(decider): State<Arc<Decider>>, request: Request) -> Response {
    let headers = request.headers();
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let (Some(method), Some(target)) = (text("x-original-method"), text("x-original-uri")) else {
        decider.stats.errors.fetch_add(1, Ordering::Relaxed);
        return Problem::new(400, "bad_request").response();
    };
    let extensions = request.extensions();
    let peer = extensions
        .get::<ConnectInfo<Downstream>>()
        .map(|info| info.0.address.ip())
        .or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip()));
    let source = text("x-real-ip")
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .or(peer)
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        .to_canonical();
    let facts = Facts {
        method,
        target,
        source,
        headers,
        // A gateway terminates TLS itself: no client certificate reaches this endpoint.
        peer_identities: &[],
        sees_response: false,
    };
    match decider.decide(&facts).await {
        // Without sight of the response no duty is handed out (see `decide`).
        Verdict::Forward(_) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::OK;
            response
        }
        // Never handed out where the body is not seen (see `decide`); refused all the same.
        Verdict::CheckBody(_) => gateway_denial(Denial::new(403, "request_inspection_unavailable")),
        Verdict::Deny(denial) => gateway_denial(denial),
    }
}

/// A denial as nginx's `auth_request` reads it.
fn gateway_denial(denial: Denial) -> Response {
    let mut response = denial.response();
    // nginx treats any answer but 2xx, 401 and 403 from auth_request as an error;
    // the status is repeated so a gateway can map it (auth_request_set).
    response.headers_mut().insert(
        "x-palisade-status",
        HeaderValue::from(denial.problem.status),
    );
    if let Ok(code) = HeaderValue::from_str(&denial.problem.code) {
        response.headers_mut().insert("x-palisade-reason", code);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        headers.insert("x-request-id", HeaderValue::from_static("r1"));
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["authorization", "x-request-id"]);
    }

    #[test]
    fn forwarding_headers_are_appended_and_hosts_checked() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        headers.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=203.0.113.9"),
        );
        add_forwarding(
            &mut headers,
            "198.51.100.7".parse().unwrap(),
            Some("api.example.com:8443"),
            "http",
        );
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 198.51.100.7");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "api.example.com:8443");
        assert_eq!(
            headers[header::FORWARDED],
            "for=203.0.113.9, for=198.51.100.7;proto=http;host=\"api.example.com:8443\""
        );

        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-host", HeaderValue::from_static("spoofed"));
        add_forwarding(
            &mut headers,
            "2001:db8::1".parse().unwrap(),
            Some("evil\";for=1.2.3.4"),
            "http",
        );
        assert_eq!(
            headers[header::FORWARDED],
            "for=\"[2001:db8::1]\";proto=http"
        );
        assert!(
            headers.get("x-forwarded-host").is_none(),
            "an odd host is dropped, not passed on"
        );
        assert_eq!(headers["x-forwarded-for"], "2001:db8::1");
    }

    #[test]
    fn the_upstream_uri_keeps_its_prefix() {
        let uri = |upstream: &str, target: &'static str| {
            let url: Url = upstream.parse().unwrap();
            let (prefix, authority) = upstream_parts(&url).unwrap();
            let upstream = Upstream {
                scheme: url.scheme().parse().unwrap(),
                authority: authority.parse().unwrap(),
                prefix,
                host: HeaderValue::from_str(&authority).unwrap(),
            };
            let path = upstream.path(&http::uri::PathAndQuery::from_static(target)).unwrap();
            assert!(path.scheme().is_none() && path.authority().is_none(), "origin form on the agent's own connections");
            (upstream.absolute(&path).unwrap().to_string(), upstream.host)
        };
        assert_eq!(uri("http://127.0.0.1:9000", "/a?b=1"), ("http://127.0.0.1:9000/a?b=1".into(), HeaderValue::from_static("127.0.0.1:9000")));
        assert_eq!(uri("https://api.internal/v2/", "/pets"), ("https://api.internal/v2/pets".into(), HeaderValue::from_static("api.internal")));
        assert_eq!(uri("http://[::1]:81/", "/"), ("http://[::1]:81/".into(), HeaderValue::from_static("[::1]:81")));
    }
}
