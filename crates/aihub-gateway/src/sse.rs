//! Incremental server-sent-events framing. Bytes from the upstream are pushed in as they
//! arrive; complete events come out as zero-copy slices of the input, so they can be forwarded
//! verbatim while the few fields the gateway needs (usage, `[DONE]`) are read from them.

use bytes::{Bytes, BytesMut};

/// Largest single event accepted (a bigger one is an upstream fault).
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The whole event as received, terminator included (`…\n\n`).
    pub raw: Bytes,
    /// The `event:` field, if any.
    pub name: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: Bytes,
}

impl Event {
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.data.as_ref() == b"[DONE]"
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an upstream event exceeded {MAX_EVENT_BYTES} bytes")]
pub struct EventTooLarge;

#[derive(Default)]
pub struct SseParser {
    buf: BytesMut,
}

impl SseParser {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), EventTooLarge> {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > MAX_EVENT_BYTES && find_boundary(&self.buf).is_none() {
            return Err(EventTooLarge);
        }
        Ok(())
    }

    /// The next complete event, if one has fully arrived. Events without data (comments,
    /// keep-alives) are skipped.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            let (end, term) = find_boundary(&self.buf)?;
            let raw = self.buf.split_to(end + term).freeze();
            if let Some(ev) = parse_event(raw) {
                return Some(ev);
            }
        }
    }

    /// Bytes received after the last complete event (a stream cut short).
    #[must_use]
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Position of the first blank line (`\n\n`, `\r\n\r\n` or `\r\r`) and its length.
fn find_boundary(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(off) = memchr::memchr2(b'\n', b'\r', buf.get(i..)?) {
        let p = i + off;
        let rest = buf.get(p..)?;
        if rest.starts_with(b"\n\n") || rest.starts_with(b"\r\r") {
            return Some((p, 2));
        }
        if rest.starts_with(b"\r\n\r\n") {
            return Some((p, 4));
        }
        if rest.starts_with(b"\n\r\n") {
            return Some((p, 3));
        }
        i = p + 1;
    }
    None
}

fn parse_event(raw: Bytes) -> Option<Event> {
    let mut name = None;
    let mut data: Option<Vec<u8>> = None;
    let mut single: Option<Bytes> = None;
    // Lines split by a vector search for `\n` (a byte-by-byte split cost more than the rest
    // of the event's handling).
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', &raw).chain(std::iter::once(raw.len()));
    for end in ends {
        let line = raw.get(start..end).unwrap_or_default();
        start = end + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line.starts_with(b":") {
            continue;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(c) => {
                let v = line.get(c + 1..).unwrap_or_default();
                (
                    line.get(..c).unwrap_or_default(),
                    v.strip_prefix(b" ").unwrap_or(v),
                )
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => name = Some(String::from_utf8_lossy(value).into_owned()),
            b"data" => match (&mut data, &single) {
                (None, None) => single = Some(raw.slice_ref(value)),
                (None, Some(first)) => {
                    let mut joined = first.to_vec();
                    joined.push(b'\n');
                    joined.extend_from_slice(value);
                    data = Some(joined);
                }
                (Some(d), _) => {
                    d.push(b'\n');
                    d.extend_from_slice(value);
                }
            },
            _ => {}
        }
    }
    let data = match (data, single) {
        (Some(d), _) => Bytes::from(d),
        (None, Some(s)) => s,
        (None, None) => return None,
    };
    Some(Event { raw, name, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut SseParser) -> Vec<Event> {
        std::iter::from_fn(|| p.next_event()).collect()
    }

    #[test]
    fn events_split_across_chunks() {
        let mut p = SseParser::new();
        p.push(b"data: {\"a\":").unwrap();
        assert!(p.next_event().is_none());
        p.push(b"1}\n\ndata: [DO").unwrap();
        let evs = all(&mut p);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].data.as_ref(), b"{\"a\":1}");
        assert_eq!(evs[0].raw.as_ref(), b"data: {\"a\":1}\n\n");
        p.push(b"NE]\n\n").unwrap();
        let evs = all(&mut p);
        assert!(evs[0].is_done());
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn named_events_crlf_comments_and_multiline_data() {
        let mut p = SseParser::new();
        p.push(b": keep-alive\n\nevent: message_start\r\ndata: {\"x\":1}\r\n\r\nevent: ping\ndata:{}\n\ndata: a\ndata: b\n\n")
            .unwrap();
        let evs = all(&mut p);
        assert_eq!(evs.len(), 3, "the comment-only event is skipped");
        assert_eq!(evs[0].name.as_deref(), Some("message_start"));
        assert_eq!(evs[0].data.as_ref(), b"{\"x\":1}");
        assert_eq!(evs[1].name.as_deref(), Some("ping"));
        assert_eq!(evs[1].data.as_ref(), b"{}");
        assert_eq!(evs[2].data.as_ref(), b"a\nb");
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut p = SseParser::new();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(p.push(&big), Err(EventTooLarge));
    }
}
