//! Serving the agent's listeners: the reverse proxy's caller connections (HTTP/1.1 or
//! HTTP/2, told apart by their first bytes; plain or TLS), one task per HTTP/1.1
//! connection, which serves the caller's requests and also drives the connection's own
//! upstream connection, so a request and its answer are carried without handing work to
//! another task, and a task per HTTP/2 stream; and the decision endpoint. Both with a time
//! limit on a request's head (`Timeouts::caller_head`) and a graceful stop.

use crate::preface::{self, Protocol, Replayed};
use crate::proxy::Proxy;
use crate::timeouts::WriteLimit;
use crate::tls::TlsPeer;
use crate::upstream::UpstreamLink;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::{Listener, ListenerExt, TapIo};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy knows of a caller connection.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The socket's peer address (IPv4-mapped IPv6 as IPv4): the only source the proxy
    /// trusts, worked out once per connection.
    pub source: IpAddr,
    /// The verified client certificate's identities, most specific first; empty without
    /// TLS or when the caller presented none.
    pub identities: Arc<Vec<String>>,
    /// Whether the caller reached the agent over TLS.
    pub tls: bool,
}

impl From<SocketAddr> for Caller {
    fn from(address: SocketAddr) -> Caller {
        Caller { source: address.ip().to_canonical(), identities: Arc::default(), tls: false }
    }
}

impl From<TlsPeer> for Caller {
    fn from(peer: TlsPeer) -> Caller {
        Caller { source: peer.address.ip().to_canonical(), identities: peer.identities, tls: true }
    }
}

/// `listener`, its connections sending what is written at once (`TCP_NODELAY`, as nginx
/// sets it): Nagle's algorithm would hold an answer back until the caller acknowledged
/// the last one.
pub fn no_delay(listener: TcpListener) -> TapIo<TcpListener, fn(&mut TcpStream)> {
    fn set(stream: &mut TcpStream) {
        let _ = stream.set_nodelay(true);
    }
    ListenerExt::tap_io(listener, set as fn(&mut TcpStream))
}

/// One caller connection as its requests see it.
struct Connection {
    caller: Caller,
    upstream: UpstreamLink,
}

/// Serves the proxy on every connection `listener` accepts until `stop` turns true; then
/// accepts no more, lets each connection finish the requests it is on, and returns when
/// all have closed. A caller has the proxy's `caller_head` time-out to send its first
/// bytes and (HTTP/1.1) each request's head.
pub async fn serve<L>(listener: L, proxy: Arc<Proxy>, stop: watch::Receiver<bool>)
where
    L: Listener,
    L::Addr: Into<Caller>,
{
    let timeouts = proxy.timeouts();
    // Shared by the connections' tasks, not copied into each.
    let builders = Arc::new((http1_builder(timeouts.caller_head), http2_builder()));
    accept_until_stopped(listener, stop, |io, caller, stop| {
        let (proxy, builders) = (proxy.clone(), builders.clone());
        let caller = caller.into();
        async move {
            let io = WriteLimit::new(io, timeouts.caller_body);
            let (protocol, io) = match tokio::time::timeout(timeouts.caller_head, preface::tell(io)).await {
                Ok(Ok(told)) => told,
                Ok(Err(error)) => return tracing::debug!(%error, "a caller connection broke before its first request"),
                Err(_) => return tracing::debug!("a caller connection sent nothing in time"),
            };
            let connection = Arc::new(Connection { caller, upstream: proxy.link(protocol) });
            let service = ProxyService { proxy, connection: connection.clone() };
            let io = TokioIo::new(io);
            let (http1, http2) = &*builders;
            match protocol {
                Protocol::Http1 => {
                    let http = Box::pin(http1.serve_connection(io, service).with_upgrades());
                    Served { http, connection, stop: Some(stop) }.await;
                }
                // Its streams are tasks of their own (hyper spawns them).
                Protocol::Http2 => until_stopped(http2.serve_connection(io, service), stop, "an HTTP/2 caller connection").await,
            }
        }
    })
    .await;
}

/// Serves one connection until it ends; at the stop, the caller is told (`Connection:
/// close` after the request under way, or HTTP/2's GOAWAY) and what is under way finishes.
/// `what` names the connection in the log.
async fn until_stopped<C>(served: C, mut stop: StopSignal, what: &str)
where
    C: GracefulConnection<Error = hyper::Error>,
{
    let mut served = std::pin::pin!(served);
    let ended = tokio::select! {
        ended = served.as_mut() => ended,
        () = &mut stop => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%error, "{what} ended with an error");
    }
}

/// Serves `router` (the decision endpoint) as [`serve`] serves the proxy: the same limit
/// on a request's head and the same graceful stop. Handlers see the caller's address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve_router<L>(listener: L, router: Router, stop: watch::Receiver<bool>, head_timeout: Duration)
where
    L: Listener<Addr = SocketAddr>,
{
    let builder = http1_builder(head_timeout);
    accept_until_stopped(listener, stop, |io, address, stop| {
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(address));
            tower::ServiceExt::oneshot(router.clone(), request)
        });
        until_stopped(builder.serve_connection(TokioIo::new(io), service), stop, "a connection to the decision endpoint")
    })
    .await;
}

/// HTTP/1.1 as both listeners serve it: a timer, so that the head timeout applies.
fn http1_builder(head_timeout: Duration) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(head_timeout);
    builder
}

/// HTTP/2 as the proxy serves it: streams run on the runtime, at most 128 at once on a
/// connection (nginx's default).
fn http2_builder() -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new()).max_concurrent_streams(128);
    builder
}

/// A stop signal for one connection: completes once the stop is asked for.
type StopSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Accepts connections until `stop` turns true, running each as the task `connection`
/// makes of it (given the stream, the caller and its own stop signal); then accepts no
/// more and returns when every connection's task has ended.
async fn accept_until_stopped<L, F, C>(mut listener: L, mut stop: watch::Receiver<bool>, mut connection: C)
where
    L: Listener,
    C: FnMut(L::Io, L::Addr, StopSignal) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    // Each connection's task holds a receiver: when the last is gone, all have ended.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let (io, caller) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let mut stopped = stop.clone();
        let signal: StopSignal = Box::pin(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        });
        let task = connection(io, caller, signal);
        let open = open_rx.clone();
        tokio::spawn(async move {
            task.await;
            drop(open);
        });
    }
    drop(listener);
    drop(open_rx);
    open_tx.closed().await;
}

/// The proxy as hyper calls it, once per request of a connection.
struct ProxyService {
    proxy: Arc<Proxy>,
    connection: Arc<Connection>,
}

impl hyper::service::Service<http::Request<Incoming>> for ProxyService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let proxy = self.proxy.clone();
        let connection = self.connection.clone();
        Box::pin(async move {
            Ok(proxy.handle(request, &connection.caller, &connection.upstream).await)
        })
    }
}

type Http<I> = http1::UpgradeableConnection<TokioIo<Replayed<WriteLimit<I>>>, ProxyService>;

/// A caller connection's task: its HTTP, its upstream connection, and the stop signal.
struct Served<I> {
    http: Pin<Box<Http<I>>>,
    connection: Arc<Connection>,
    /// Until it fires; then the connection is asked to close after its current request.
    stop: Option<StopSignal>,
}

impl<I> Future for Served<I>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(stop) = this.stop.as_mut()
            && stop.as_mut().poll(cx).is_ready()
        {
            this.stop = None;
            this.http.as_mut().graceful_shutdown();
        }
        // An answer the upstream has sent is read before the caller's side runs, so the
        // request waiting for it finishes in this same poll.
        this.connection.upstream.drive(cx);
        if let Poll::Ready(ended) = this.http.as_mut().poll(cx) {
            if let Err(error) = ended {
                tracing::debug!(%error, "a caller connection ended with an error");
            }
            return Poll::Ready(());
        }
        // And what the caller's side has just handed over (a request, a wish for more of an
        // answer) goes out now, not at the next wake-up.
        this.connection.upstream.drive(cx);
        Poll::Pending
    }
}
