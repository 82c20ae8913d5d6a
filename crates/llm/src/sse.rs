//! A small incremental parser for `text/event-stream` (the WHATWG SSE format).
//!
//! Bytes go in as they arrive from the network, split anywhere (even inside a
//! UTF-8 character or between `\r` and `\n`); complete events come out.
//! Lines end with `\n`, `\r\n` or `\r`; `:` lines are comments; several
//! `data:` lines of one event are joined with `\n`; a blank line ends an event.
//! An event still open when the stream ends is discarded, as the format says.

/// Upper bound on one buffered line or event, so a broken peer cannot exhaust memory.
const MAX_BUFFERED: usize = 16 * 1024 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; empty when the event has none (the format's "message").
    pub event: String,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended in `\r`; a `\n` right after it belongs to that line end.
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("server-sent event larger than {MAX_BUFFERED} bytes")]
pub struct SseTooLarge;

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk and returns the events it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseTooLarge> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..pos]);
            let is_cr = rest[pos] == b'\r';
            rest = &rest[pos + 1..];
            if is_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            let line = std::mem::take(&mut self.line);
            if let Some(ev) = self.line_done(&line) {
                events.push(ev);
            }
            if self.data.len() > MAX_BUFFERED {
                return Err(SseTooLarge);
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_BUFFERED {
            return Err(SseTooLarge);
        }
        Ok(events)
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            let has_data = std::mem::replace(&mut self.has_data, false);
            return has_data.then_some(SseEvent { event, data });
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = value.to_string(),
            // `id` and `retry` matter for reconnecting EventSource clients only.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent { event: event.into(), data: data.into() }
    }

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        chunks.iter().flat_map(|c| p.push(c).unwrap()).collect()
    }

    const STREAM: &str = ": comment\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\ndata: x\ndata:  y\n\nevent: ping\rdata\r\rdata: é✓\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![ev("message_start", "{\"a\":1}"), ev("", "x\n y"), ev("ping", ""), ev("", "é✓")]
    }

    #[test]
    fn whole_stream() {
        assert_eq!(parse_all(&[STREAM.as_bytes()]), expected());
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let bytes = STREAM.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let got = parse_all(&[&bytes[..i], &bytes[i..j], &bytes[j..]]);
                assert_eq!(got, expected(), "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let bytes = STREAM.as_bytes();
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_all(&chunks), expected());
    }

    #[test]
    fn crlf_split_between_cr_and_lf_is_one_line_end() {
        // If the "\n" after a chunk-final "\r" were read as a second line end,
        // the blank line would end the event before its second data line.
        let got = parse_all(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(got, vec![ev("", "a\nb")]);
    }

    #[test]
    fn unterminated_event_is_discarded_and_events_without_data_are_not_dispatched() {
        assert_eq!(parse_all(&[b"event: x\n\ndata: partial"]), vec![]);
    }

    #[test]
    fn openai_done_marker() {
        assert_eq!(parse_all(&[b"data: [DONE]\n\n"]), vec![ev("", "[DONE]")]);
    }
}
