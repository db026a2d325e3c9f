//! A server-sent events reader for the control plane's event stream: bytes in, complete
//! events out, whatever the chunking. Comments (keep-alives) are dropped; a line longer
//! than the bound is dropped with its event rather than growing the buffer without end.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

const MAX_LINE_BYTES: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// The current line overflowed: skip to its end.
    skipping: bool,
    name: Option<String>,
    data: Option<String>,
    /// The current event had an oversized line: it is not dispatched.
    spoiled: bool,
}

impl Parser {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                if self.skipping {
                    self.skipping = false;
                } else {
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    if let Some(event) = self.line_done(line) {
                        events.push(event);
                    }
                }
                self.line.clear();
            } else if !self.skipping {
                if self.line.len() >= MAX_LINE_BYTES {
                    self.skipping = true;
                    self.spoiled = true;
                    self.line.clear();
                } else {
                    self.line.push(byte);
                }
            }
        }
        events
    }

    fn line_done(&mut self, line: &[u8]) -> Option<Event> {
        if line.is_empty() {
            let name = self.name.take().unwrap_or_else(|| "message".to_owned());
            let data = self.data.take();
            let spoiled = std::mem::take(&mut self.spoiled);
            return data.filter(|_| !spoiled).map(|data| Event { name, data });
        }
        if line.first() == Some(&b':') {
            return None;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = text.split_once(':').map_or((text.as_ref(), ""), |(f, v)| {
            (f, v.strip_prefix(' ').unwrap_or(v))
        });
        match field {
            "event" => self.name = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) if data.len() < MAX_LINE_BYTES => {
                    data.push('\n');
                    data.push_str(value);
                }
                Some(_) => self.spoiled = true,
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_across_chunks_and_comments_are_dropped() {
        let stream = b": keep-alive\n\nevent: revision\ndata: {\"revision\":3}\n\nevent: revoked\ndata: {}\r\n\r\n";
        for split in 0..stream.len() {
            let mut parser = Parser::default();
            let mut events = parser.push(&stream[..split]);
            events.extend(parser.push(&stream[split..]));
            assert_eq!(
                events,
                [
                    Event {
                        name: "revision".into(),
                        data: "{\"revision\":3}".into()
                    },
                    Event {
                        name: "revoked".into(),
                        data: "{}".into()
                    },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_oversized_line_spoils_only_its_event() {
        let mut parser = Parser::default();
        let mut big = b"event: revision\ndata: ".to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES * 2));
        big.extend_from_slice(b"\n\nevent: revision\ndata: 1\n\n");
        assert_eq!(
            parser.push(&big),
            [Event {
                name: "revision".into(),
                data: "1".into()
            }]
        );
        assert!(parser.line.capacity() <= MAX_LINE_BYTES * 2);
    }
}
