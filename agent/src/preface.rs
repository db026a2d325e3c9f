//! Which HTTP a caller connection speaks, told by its first bytes: HTTP/2 opens with a
//! fixed preface (RFC 9113 §3.4; sent both after ALPN `h2` and with prior knowledge over
//! plain TCP), anything else is HTTP/1. The bytes read to tell are handed back to the
//! protocol's server before the rest of the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// What every HTTP/2 connection starts with.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How much is read to tell: the first read of an HTTP/1 request usually holds its whole
/// head, which the server then takes from here.
const FIRST_READ: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Reads from `io` until its first bytes tell the protocol: at the first byte that departs
/// from the preface (at once for any HTTP/1 request), when the whole preface has come, or
/// at the end of the stream (HTTP/1's server then sees a closed connection).
pub async fn tell<I: AsyncRead + Unpin>(mut io: I) -> io::Result<(Protocol, Replayed<I>)> {
    let mut read = Vec::with_capacity(FIRST_READ);
    loop {
        // Into the spare capacity, so the allocation made above is the only one.
        let ended = io.read_buf(&mut read).await? == 0;
        let protocol = if read.starts_with(PREFACE) {
            Some(Protocol::Http2)
        } else if ended || !PREFACE.starts_with(&read) {
            Some(Protocol::Http1)
        } else {
            None
        };
        // Undecided only while what came is a strict prefix of the preface: under 24 bytes,
        // well within the first allocation.
        if let Some(protocol) = protocol {
            return Ok((protocol, Replayed { read, at: 0, io }));
        }
    }
}

/// `io` with the bytes [`tell`] read from it put back in front.
#[derive(Debug)]
pub struct Replayed<I> {
    read: Vec<u8>,
    /// How much of `read` has been handed on.
    at: usize,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Replayed<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.read.len() {
            let rest = &this.read[this.at..];
            let taken = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..taken]);
            this.at += taken;
            if this.at == this.read.len() {
                // Handed on: the memory goes with the connection's first request.
                this.read = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Replayed<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Tells what `chunks`, written one by one, are, and reads back all that was sent.
    async fn told(chunks: &[&[u8]]) -> (Protocol, Vec<u8>) {
        let (mut caller, agent) = tokio::io::duplex(64 * 1024);
        let chunks: Vec<Vec<u8>> = chunks.iter().map(|chunk| chunk.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for chunk in chunks {
                caller.write_all(&chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let (protocol, mut replayed) = tell(agent).await.unwrap();
        writer.await.unwrap();
        let mut all = Vec::new();
        replayed.read_to_end(&mut all).await.unwrap();
        (protocol, all)
    }

    #[tokio::test]
    async fn the_preface_tells_http2_and_every_byte_is_handed_back() {
        let (protocol, all) = told(&[b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\n\x00\x00\x12\x04"]).await;
        assert_eq!(protocol, Protocol::Http2);
        assert_eq!(all, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04");
    }

    #[tokio::test]
    async fn anything_else_is_http1_as_soon_as_it_departs_from_the_preface() {
        let request: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(told(&[request]).await, (Protocol::Http1, request.to_vec()));
        // `P` could be either, `PU` only HTTP/1 (PUT).
        assert_eq!(told(&[b"P", b"UT /x HTTP/1.1\r\n\r\n"]).await, (Protocol::Http1, b"PUT /x HTTP/1.1\r\n\r\n".to_vec()));
        // A stream that ends inside the preface, or at once, is left to HTTP/1 to close.
        assert_eq!(told(&[b"PRI * HT"]).await, (Protocol::Http1, b"PRI * HT".to_vec()));
        assert_eq!(told(&[]).await, (Protocol::Http1, Vec::new()));
    }

    #[tokio::test]
    async fn a_large_first_read_is_handed_back_whole() {
        let request = [b"POST / HTTP/1.1\r\nContent-Length: 10000\r\n\r\n".as_slice(), &[b'x'; 10_000]].concat();
        let (protocol, all) = told(&[&request]).await;
        assert_eq!((protocol, all.len()), (Protocol::Http1, request.len()));
    }
}
