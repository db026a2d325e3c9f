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
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn Error + Send + Sync>;

/// The proxy's time limits (nginx's defaults are 60 s for each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// For a caller to send a request's head, counted from when the agent starts waiting
    /// for it (so also how long an idle keep-alive connection is kept): a caller that
    /// trickles its head (slowloris) loses the connection.
    pub caller_head: Duration,
    /// For the next bytes of a caller's request body.
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
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(timed_out) = error.downcast_ref::<TimedOut>() {
            return Some(timed_out);
        }
        cause = error.source();
    }
    None
}

/// A body that fails with [`TimedOut`] when its next frame does not come within `limit`
/// of the reader asking for it. Time the reader spends elsewhere (writing what it read to a
/// slow peer) does not count: the clock runs only while the reader waits.
pub struct IdleLimit<B> {
    body: B,
    limit: Duration,
    side: Side,
    /// Armed the first time the reader has to wait, and moved on each later wait.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the reader is waiting (the timer counts for this wait).
    waiting: bool,
    failed: bool,
}

impl<B> IdleLimit<B> {
    pub fn new(body: B, limit: Duration, side: Side) -> IdleLimit<B> {
        IdleLimit { body, limit, side, timer: None, waiting: false, failed: false }
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
            this.waiting = false;
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if !this.waiting {
            this.waiting = true;
            let deadline = Instant::now() + this.limit;
            match this.timer.as_mut() {
                Some(timer) => timer.as_mut().reset(deadline),
                None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let timer = this.timer.as_mut().expect("armed above");
        if timer.as_mut().poll(cx).is_ready() {
            this.failed = true;
            return Poll::Ready(Some(Err(Box::new(TimedOut { side: this.side, after: this.limit }))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// When a request's body last moved towards the upstream: the upstream's time to answer
/// counts from there, so a long upload is not cut off while it is still being sent.
pub struct Sending {
    since: Instant,
    /// Nanoseconds from `since` to the last frame taken.
    last: AtomicU64,
}

impl Sending {
    pub fn new() -> Arc<Sending> {
        Arc::new(Sending { since: Instant::now(), last: AtomicU64::new(0) })
    }

    fn moved(&self) {
        let nanos = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    fn last_moved(&self) -> Instant {
        self.since + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }
}

/// A request body that notes in [`Sending`] each time the upstream connection takes a frame.
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
        if frame.is_ready() {
            this.sending.moved();
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
/// (`sending`; without it, from now).
pub async fn answer_within<F: Future>(limit: Duration, sending: Option<&Sending>, answer: F) -> Result<F::Output, TimedOut> {
    let mut answer = std::pin::pin!(answer);
    let mut timer = std::pin::pin!(tokio::time::sleep(limit));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(answered) = answer.as_mut().poll(cx) {
            return Poll::Ready(Ok(answered));
        }
        // The timer is moved on lazily: only when it fires is the request's last move read.
        while timer.as_mut().poll(cx).is_ready() {
            let deadline = sending.map_or(timer.deadline(), |sending| sending.last_moved() + limit);
            if deadline <= Instant::now() {
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
    }
}
