//! The two ways requests reach a decision: the reverse proxy (decide, then stream the
//! request to the upstream and its answer back, or join the two connections when the
//! upstream accepts a protocol switch such as WebSocket) and the decision endpoint for gateways
//! (nginx `auth_request`: `GET|POST /decide` with `X-Original-Method`, `X-Original-URI`
//! and `X-Real-IP`, answered 200 or with the denial).
//!
//! The proxy trusts only the socket for the caller's address; the decision endpoint trusts
//! `X-Real-IP` because only the gateway is meant to reach it. Client certificates a
//! gateway passes on are verified by the agent itself (`gateway_certs`).

use crate::decide::{BodyDuty, Decider, Denial, Facts, Inspected, ReadBody, Verdict};
use crate::gateway_certs::{GatewayCertificates, Presented};
use crate::problem::Problem;
use crate::status::Stats;
use crate::connections::Caller;
use crate::timeouts::{IdleLimit, Side, Timeouts, timed_out};
use crate::preface::Protocol;
use crate::upstream::{Upstream, UpstreamLink};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::get;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub struct Proxy {
    decider: Arc<Decider>,
    upstream: Upstream,
    timeouts: Timeouts,
}

impl Proxy {
    /// A proxy to `upstream`, spoken to in `upstream_protocol`.
    pub fn new(decider: Arc<Decider>, upstream: &url::Url, upstream_protocol: Protocol, timeouts: Timeouts) -> Result<Proxy, String> {
        Ok(Proxy {
            decider,
            upstream: Upstream::new(upstream, upstream_protocol, timeouts.upstream)?,
            timeouts,
        })
    }

    /// How the requests of a caller connection in `protocol` reach the upstream.
    pub fn link(&self, protocol: Protocol) -> UpstreamLink {
        self.upstream.link(protocol)
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Decides one request from `caller` and, if it is allowed, forwards it over the
    /// caller connection's own upstream connection.
    pub async fn handle(&self, request: http::Request<hyper::body::Incoming>, caller: &Caller, upstream: &UpstreamLink) -> Response {
        let request = request.map(|body| Body::new(IdleLimit::new(body, self.timeouts.caller_body, Side::Caller)));
        let source = caller.source;
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
            peer_identities: &caller.identities,
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
            Verdict::Forward(None) => self.forward(request, &target, caller, upstream, true).await,
            Verdict::Forward(Some(duty)) => {
                let (mut parts, body) = request.into_parts();
                // A compressed answer could not be read: ask the upstream for plain text.
                parts.headers.remove(header::ACCEPT_ENCODING);
                let request = Request::from_parts(parts, body);
                // A tunnel's traffic could not be inspected: the protocol switch is not
                // passed on (the upstream sees a plain request and its answer is inspected).
                let response = self.forward(request, &target, caller, upstream, false).await;
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
    /// with the body to forward: the bytes read, or, when it is too large and only
    /// monitored, the body as it came.
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
            Bounded::TooLarge(body)
        } else {
            read_bounded(body, max).await
        };
        match read {
            Bounded::Whole(bytes) => {
                let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                let verdict = self.decider.finish_body(duty, ReadBody::Read { content_type, body: &bytes }).await;
                (verdict, Request::from_parts(parts, Body::from(bytes)))
            }
            Bounded::TooLarge(body) => (self.decider.finish_body(duty, ReadBody::TooLarge).await, Request::from_parts(parts, body)),
            Bounded::Broken(error) => {
                let read = if timed_out(&error).is_some() { ReadBody::TimedOut } else { ReadBody::Unreadable };
                (self.decider.finish_body(duty, read).await, Request::from_parts(parts, Body::empty()))
            }
        }
    }

    /// Forwards an allowed request and streams the answer back; with `may_upgrade`, a
    /// protocol switch the caller asks for (WebSocket) is passed on, and if the upstream
    /// agrees the two connections are joined.
    async fn forward(&self, request: Request, target: &http::uri::PathAndQuery, caller: &Caller, link: &UpstreamLink, may_upgrade: bool) -> Response {
        let (mut parts, body) = request.into_parts();
        // Read before the hop-by-hop headers go: `Upgrade` and `TE` are among them. An
        // HTTP/2 upstream takes no switch (the request goes to it as a plain one).
        let upgrade = if may_upgrade && !self.upstream.speaks_http2() { upgrade_asked(&parts) } else { None };
        // gRPC's `te: trailers`, the one `TE` HTTP/2 allows, is a promise about the
        // caller's own reading; passed on only where it means the same.
        let trailers = self.upstream.speaks_http2() && accepts_trailers(&parts.headers);
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
        if trailers {
            parts.headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        let scheme = if caller.tls { "https" } else { "http" };
        add_forwarding(&mut parts.headers, caller.source, original_host.as_deref(), scheme);
        parts.headers.insert(header::HOST, self.upstream.host().clone());
        // The upstream client speaks HTTP/1.1 whatever the caller spoke (1.0 included).
        parts.version = Version::HTTP_11;
        if let Some(protocol) = upgrade {
            return self.forward_upgrade(parts, body, path, protocol).await;
        }
        match self.upstream.send(link, parts, body, path).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Body::new(IdleLimit::new(body, self.timeouts.upstream, Side::Upstream)))
            }
            Err(error) => unanswered(&self.decider.stats, &*error),
        }
    }

    /// Passes on a protocol switch: the request over a connection of its own, and on 101
    /// the caller's connection and that one joined until either side closes.
    async fn forward_upgrade(&self, mut parts: http::request::Parts, body: Body, path: http::Uri, protocol: HeaderValue) -> Response {
        let Some(caller) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            return not_forwarded(Problem::new(400, "bad_request").response());
        };
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
        let mut response = match self.upstream.send_upgrade(parts, body, path).await {
            Ok(response) => response,
            Err(error) => return unanswered(&self.decider.stats, &*error),
        };
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            // Declined: an ordinary answer, and the upstream connection ends with it.
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            return Response::from_parts(parts, Body::new(body));
        }
        let upstream = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let (caller, upstream) = match tokio::try_join!(caller, upstream) {
                Ok(joined) => joined,
                Err(error) => {
                    tracing::debug!(%error, "a protocol switch was not completed");
                    return;
                }
            };
            let (mut caller, mut upstream) = (TokioIo::new(caller), TokioIo::new(upstream));
            if let Err(error) = tokio::io::copy_bidirectional(&mut caller, &mut upstream).await {
                tracing::debug!(%error, "a tunnel ended with an error");
            }
        });
        let (mut parts, _) = response.into_parts();
        // The switch's own headers stay (`Connection: upgrade`, `Upgrade`, the protocol's
        // handshake); other hop-by-hop headers do not.
        let protocol = parts.headers.remove(header::UPGRADE);
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(protocol) = protocol {
            parts.headers.insert(header::UPGRADE, protocol);
        }
        Response::from_parts(parts, Body::empty())
    }
}

/// A request body read up to a bound.
enum Bounded {
    Whole(Bytes),
    /// Over the bound: what was read and the rest, as one body again.
    TooLarge(Body),
    /// It broke off or stopped arriving.
    Broken(axum::Error),
}

async fn read_bounded(mut body: Body, max: usize) -> Bounded {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut length = 0;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => return Bounded::Broken(error),
        };
        // Trailers are not part of what the contract checks.
        let Ok(chunk) = frame.into_data() else { continue };
        length += chunk.len();
        chunks.push(chunk);
        if length > max {
            let read = futures::stream::iter(chunks.into_iter().map(Ok::<_, axum::Error>));
            return Bounded::TooLarge(Body::from_stream(futures::StreamExt::chain(read, body.into_data_stream())));
        }
    }
    match chunks.len() {
        0 => Bounded::Whole(Bytes::new()),
        1 => Bounded::Whole(chunks.swap_remove(0)),
        _ => Bounded::Whole(Bytes::from(chunks.concat())),
    }
}

/// The protocol an HTTP/1.1 request asks to switch to (`Connection: upgrade` with
/// `Upgrade`), if any. HTTP/2 has no such switch (RFC 9113 §8.6).
fn upgrade_asked(parts: &http::request::Parts) -> Option<HeaderValue> {
    if parts.version != Version::HTTP_11 {
        return None;
    }
    let protocol = parts.headers.get(header::UPGRADE)?;
    connection_options(&parts.headers)
        .any(|option| option.eq_ignore_ascii_case("upgrade"))
        .then(|| protocol.clone())
}

/// The answer when the upstream gave none, or broke off an answer the agent had to read
/// whole: 408 when the caller stopped sending the request; else counted, logged, named in
/// the status, and 504 when the upstream took too long or 502 when it could not be reached.
pub(crate) fn unanswered(stats: &Stats, error: &(dyn std::error::Error + Send + Sync + 'static)) -> Response {
    let timed_out = timed_out(error);
    if timed_out.is_some_and(|timed_out| timed_out.side == Side::Caller) {
        let mut response = Problem::new(408, "request_timeout").response();
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return not_forwarded(response);
    }
    stats.errors.fetch_add(1, Ordering::Relaxed);
    let (status, code, what) = match timed_out {
        Some(_) => (504, "upstream_timeout", "upstream timed out"),
        None => (502, "upstream_unavailable", "upstream unreachable"),
    };
    tracing::warn!(error = %error, "{what}");
    stats.set_last_error(format!("{what}: {error}"));
    not_forwarded(Problem::new(status, code).response())
}

/// Marks an answer the agent made because the request never reached the upstream: there
/// is no upstream response to inspect.
#[derive(Clone, Copy, Debug)]
struct UpstreamFailed;

fn not_forwarded(mut response: Response) -> Response {
    response.extensions_mut().insert(UpstreamFailed);
    response
}

/// Whether a header describes one connection, not the message: never forwarded (RFC 9110
/// §7.6.1).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "proxy-authenticate" | "proxy-authorization" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    )
}

/// Whether the caller says it reads trailers (`TE: trailers`, among other codings).
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| coding.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("trailers"))
}

/// The options the `Connection` header lists (`keep-alive`, `upgrade`, header names), trimmed.
fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|option| !option.is_empty())
}

/// Removes hop-by-hop headers, including those the `Connection` header names. Only the
/// names present are removed: each removal hashes its name, and most messages carry one
/// (`Connection`) or none.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present: Vec<HeaderName> = headers.keys().filter(|name| is_hop_by_hop(name)).cloned().collect();
    if present.is_empty() {
        return;
    }
    present.extend(connection_options(headers).filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok()));
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

/// The gateway decision endpoint: `GET|POST /decide` and any path under it; with
/// `certificates`, it knows callers by the client certificates the gateway passes on.
pub fn decision_router(decider: Arc<Decider>, certificates: Option<GatewayCertificates>) -> Router {
    let gateway = Arc::new(Gateway { decider, certificates });
    Router::new()
        .route("/decide", get(decide).post(decide))
        .route("/decide/{*rest}", get(decide).post(decide))
        .with_state(gateway)
}

/// What the decision endpoint decides with.
struct Gateway {
    decider: Arc<Decider>,
    certificates: Option<GatewayCertificates>,
}

async fn decide(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let decider = &gateway.decider;
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
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let source = text("x-real-ip")
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .or(peer)
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        .to_canonical();
    // The gateway ended the caller's TLS: the certificate, if any, comes in its header.
    let identities = match gateway.certificates.as_ref().map(|certificates| certificates.read(headers)) {
        None | Some(Presented::Nothing) => Vec::new(),
        Some(Presented::Verified(identities)) => identities,
        Some(Presented::Refused(why)) => {
            // As a certificate the TLS listener refuses ends the handshake, this ends the
            // request before any decision (and so without a decision record); the
            // operator sees why in the agent's status.
            decider.stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%why, "a gateway passed on a client certificate that is not trusted");
            decider.stats.set_last_error(format!("a gateway passed on a client certificate that is not trusted: {why}"));
            return gateway_denial(Denial::new(401, "client_certificate_not_trusted"));
        }
    };
    let facts = Facts {
        method,
        target,
        source,
        headers,
        peer_identities: &identities,
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
}
