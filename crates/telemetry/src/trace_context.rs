//! W3C Trace Context (`traceparent: 00-<trace id>-<span id>-<flags>`).
//!
//! Ingresses start a trace (or continue the caller's), put it in the bus
//! headers, and every hop logs the trace id and starts a child span id.

use rand::RngCore;

pub const HEADER: &str = "traceparent";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceContext {
    /// A new trace with a random trace id.
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        rng.fill_bytes(&mut trace_id);
        rng.fill_bytes(&mut span_id);
        Self { trace_id, span_id, sampled: true }
    }

    /// The same trace, a new span id.
    pub fn child(&self) -> Self {
        let mut span_id = [0u8; 8];
        rand::rng().fill_bytes(&mut span_id);
        Self { span_id, ..*self }
    }

    /// Parses a `traceparent` header; `None` for anything malformed (all-zero ids included).
    pub fn parse(value: &str) -> Option<Self> {
        let parts: Vec<&str> = value.trim().split('-').collect();
        if parts.len() < 4 || parts[0].len() != 2 || parts[0] == "ff" {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex::decode_to_slice(parts[1], &mut trace_id).ok()?;
        hex::decode_to_slice(parts[2], &mut span_id).ok()?;
        let flags = u8::from_str_radix(parts[3], 16).ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] || parts[3].len() != 2 {
            return None;
        }
        Some(Self { trace_id, span_id, sampled: flags & 1 == 1 })
    }

    /// The `traceparent` value (built without `format!`: every bus message carries one).
    pub fn to_header(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.span_id);
        out.push_str(if self.sampled { "-01" } else { "-00" });
        out
    }

    pub fn trace_id_hex(&self) -> String {
        let mut out = String::with_capacity(32);
        push_hex(&mut out, &self.trace_id);
        out
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_child_keeps_trace() {
        let root = TraceContext::new_root();
        let parsed = TraceContext::parse(&root.to_header()).unwrap();
        assert_eq!(parsed, root);
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "00-abc-def-01",
            "00-00000000000000000000000000000000-0000000000000001-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
        assert!(TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").is_some());
    }
}
