//! How long the proxy waits for either side of an exchange: a caller's request head and
//! body, and the upstream's answer and its body. A side that stops sending for longer loses
//! the exchange, so no caller or upstream can hold a connection (and the other side's) for
//! ever. The limits are between bytes, not on the whole exchange: a long upload or download
//! that keeps moving is never cut off.

use axum::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn Error + Send + Sync>;

/// The proxy's time limits (nginx's defaults are 60 s for each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// For a caller to send a request's head, counted from when the agent starts waiting
    /// for it (so also how long an idle keep-alive connection is kept): a caller that
    /// trickles its head (slowloris) loses the connection.
    pub caller_head: Duration,
    /// For the next bytes of a caller's request body, and for the caller to take the next
    /// bytes of an answer.
    pub caller_body: Duration,
    /// For the upstream's answer once the request has reached it, and for the next bytes
    /// of the answer's body.
    pub upstream: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            caller_head: Duration::from_secs(60),
            caller_body: Duration::from_secs(60),
            upstream: Duration::from_secs(60),
        }
    }
}

/// Which side went quiet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Caller,
    Upstream,
}

/// A side sent nothing for as long as it may.
#[derive(Debug)]
pub struct TimedOut {
    pub side: Side,
    pub after: Duration,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = match self.side {
            Side::Caller => "caller",
            Side::Upstream => "upstream",
        };
        write!(f, "the {side} sent nothing for {} ms", self.after.as_millis())
    }
}

impl Error for TimedOut {}

/// The time-out `error` stems from, if it does (bodies' errors are wrapped on their way).
pub fn timed_out<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a TimedOut> {
    crate::cause(error)
}

/// How long one side has kept the agent waiting: the clock runs only while the agent
/// waits on it (time the agent spends elsewhere, say writing what it read to a slow peer,
/// does not count), and a timer is armed only when the agent first has to wait.
struct Stall {
    limit: Duration,
    side: Side,
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the agent is waiting (the timer counts for this wait).
    waiting: bool,
}

impl Stall {
    fn new(limit: Duration, side: Side) -> Stall {
        Stall { limit, side, timer: None, waiting: false }
    }

    /// The side has just done what the agent waited for.
    fn moved(&mut self) {
        self.waiting = false;
    }

    /// The agent has to wait (again): the time-out once it has waited `limit` since the
    /// side last moved; else `cx` is woken then.
    fn wait(&mut self, cx: &mut Context<'_>) -> Option<TimedOut> {
        if !self.waiting {
            self.waiting = true;
            let deadline = Instant::now() + self.limit;
            match self.timer.as_mut() {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let timer = self.timer.as_mut()?;
        timer.as_mut().poll(cx).is_ready().then_some(TimedOut { side: self.side, after: self.limit })
    }
}

/// A body that fails with [`TimedOut`] when its next frame does not come within `limit`
/// of the reader asking for it.
pub struct IdleLimit<B> {
    body: B,
    stall: Stall,
    failed: bool,
}

impl<B> IdleLimit<B> {
    pub fn new(body: B, limit: Duration, side: Side) -> IdleLimit<B> {
        IdleLimit { body, stall: Stall::new(limit, side), failed: false }
    }
}

impl<B> Body for IdleLimit<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            this.stall.moved();
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match this.stall.wait(cx) {
            Some(timed_out) => {
                this.failed = true;
                Poll::Ready(Some(Err(Box::new(timed_out))))
            }
            None => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A caller connection whose writes fail with [`TimedOut`] when the caller takes nothing of
/// what is written for `limit`: a caller that stops reading an answer (its socket buffers
/// full) loses the connection, and with it the upstream connection it held.
pub struct WriteLimit<I> {
    io: I,
    stall: Stall,
}

impl<I> WriteLimit<I> {
    pub fn new(io: I, limit: Duration) -> WriteLimit<I> {
        WriteLimit { io, stall: Stall::new(limit, Side::Caller) }
    }

    fn guard<T>(&mut self, cx: &mut Context<'_>, write: impl FnOnce(Pin<&mut I>, &mut Context<'_>) -> Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>>
    where
        I: Unpin,
    {
        if let Poll::Ready(written) = write(Pin::new(&mut self.io), cx) {
            self.stall.moved();
            return Poll::Ready(written);
        }
        match self.stall.wait(cx) {
            Some(timed_out) => Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, timed_out))),
            None => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteLimit<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteLimit<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.get_mut().guard(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        self.get_mut().guard(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().guard(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().guard(cx, |io, cx| io.poll_shutdown(cx))
    }
}

/// How a request's body is going to the upstream: the upstream's time to answer counts
/// from when the body last moved, so a long upload is not cut off while it is still being
/// sent; nor while the body waits on the caller, whose own limit applies then.
pub struct Sending {
    since: Instant,
    /// Nanoseconds from `since` to the last frame taken.
    last: AtomicU64,
    /// Whether the body is waiting for the caller to send more.
    on_caller: AtomicBool,
}

impl Sending {
    pub fn new() -> Arc<Sending> {
        Arc::new(Sending { since: Instant::now(), last: AtomicU64::new(0), on_caller: AtomicBool::new(false) })
    }

    fn moved(&self) {
        let nanos = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
        self.on_caller.store(false, Ordering::Relaxed);
    }

    fn last_moved(&self) -> Instant {
        self.since + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }
}

/// A request body that notes in [`Sending`] each time the upstream connection takes a
/// frame, and when it has to wait for the caller.
pub struct Sent<B> {
    body: B,
    sending: Arc<Sending>,
}

impl<B> Sent<B> {
    pub fn new(body: B, sending: Arc<Sending>) -> Sent<B> {
        Sent { body, sending }
    }
}

impl<B> Body for Sent<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match frame {
            Poll::Ready(_) => this.sending.moved(),
            Poll::Pending => this.sending.on_caller.store(true, Ordering::Relaxed),
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// `answer`, unless it takes longer than `limit` from when the request last moved
/// (`sending`; without it, from now), not counting time the request waits on the caller.
pub async fn answer_within<F: Future>(limit: Duration, sending: Option<&Sending>, answer: F) -> Result<F::Output, TimedOut> {
    let mut answer = std::pin::pin!(answer);
    let mut timer = std::pin::pin!(tokio::time::sleep(limit));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(answered) = answer.as_mut().poll(cx) {
            return Poll::Ready(Ok(answered));
        }
        // The timer is moved on lazily: only when it fires is the request's state read.
        while timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let deadline = match sending {
                None => timer.deadline(),
                Some(sending) if sending.on_caller.load(Ordering::Relaxed) => now + limit,
                Some(sending) => sending.last_moved() + limit,
            };
            if deadline <= now {
                return Poll::Ready(Err(TimedOut { side: Side::Upstream, after: limit }));
            }
            timer.as_mut().reset(deadline);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_fails_and_one_that_keeps_coming_does_not() {
        // Frames 40 s apart: within a 60 s limit however long the whole body takes.
        let steady = futures::stream::unfold(0, |sent| async move {
            (sent < 5).then_some(())?;
            tokio::time::sleep(Duration::from_secs(40)).await;
            Some((Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"x"))), sent + 1))
        });
        let body = IdleLimit::new(StreamBody::new(Box::pin(steady)), Duration::from_secs(60), Side::Caller);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "xxxxx");

        let stalled = futures::stream::unfold(0, |sent| async move {
            tokio::time::sleep(Duration::from_secs(if sent == 0 { 1 } else { 61 })).await;
            Some((Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"x"))), sent + 1))
        });
        let mut body = IdleLimit::new(StreamBody::new(Box::pin(stalled)), Duration::from_secs(60), Side::Upstream);
        assert!(body.frame().await.unwrap().is_ok());
        let error = body.frame().await.unwrap().unwrap_err();
        let timed_out = timed_out(&*error).expect("a time-out");
        assert_eq!((timed_out.side, timed_out.after), (Side::Upstream, Duration::from_secs(60)));
        assert!(body.frame().await.is_none(), "nothing after the failure");
    }

    #[tokio::test(start_paused = true)]
    async fn the_answer_is_waited_for_from_the_last_move_of_the_request() {
        let never = std::future::pending::<()>();
        let started = Instant::now();
        assert!(answer_within(Duration::from_secs(60), None, never).await.is_err());
        assert_eq!(started.elapsed(), Duration::from_secs(60));

        // The request's body moved 50 s in: the answer may come until 110 s.
        for (answers_after, answered) in [(100, true), (120, false)] {
            let sending = Sending::new();
            let started = Instant::now();
            let answer = answer_within(Duration::from_secs(60), Some(&sending), tokio::time::sleep(Duration::from_secs(answers_after)));
            let moving = async {
                tokio::time::sleep(Duration::from_secs(50)).await;
                sending.moved();
                std::future::pending::<()>().await
            };
            tokio::select! {
                waited = answer => assert_eq!(waited.is_ok(), answered, "an answer after {answers_after} s"),
                () = moving => unreachable!(),
            }
            assert_eq!(started.elapsed(), Duration::from_secs(if answered { 100 } else { 110 }));
        }

        // While the body waits on the caller, the upstream's clock does not run out.
        let sending = Sending::new();
        sending.on_caller.store(true, Ordering::Relaxed);
        let answer = answer_within(Duration::from_secs(60), Some(&sending), tokio::time::sleep(Duration::from_secs(300)));
        assert!(answer.await.is_ok(), "answered 300 s in, the body having waited on the caller throughout");
    }
}
