//! Checks of a [`ConsumerSpec`] shared by every adapter, so a spec one adapter
//! refuses is refused by all of them.

use crate::port::{BusError, ConsumerSpec};

/// Whether `filter` only matches subjects of `captured`, a `prefix.>` pattern.
pub(crate) fn within(filter: &str, captured: &str) -> bool {
    let prefix = captured.strip_suffix('>').unwrap_or(captured);
    filter.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty() && rest.split('.').all(|t| !t.is_empty()))
}

pub(crate) fn validate(spec: &ConsumerSpec) -> Result<(), BusError> {
    let bad = |m: String| Err(BusError::Consume(m));
    let d = &spec.durable;
    if d.is_empty()
        || d.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return bad(format!("durable name {d:?} must be non-empty without whitespace, '.', '*', '>', '/' or '\\'"));
    }
    if spec.filter_subject.is_empty() {
        return bad(format!("consumer {d}: filter_subject is empty"));
    }
    if spec.ack_wait.is_zero() {
        return bad(format!("consumer {d}: ack_wait must be positive"));
    }
    if spec.max_deliver == 0 || spec.max_deliver < -1 {
        return bad(format!("consumer {d}: max_deliver must be at least 1, or -1 for unbounded"));
    }
    if spec.max_ack_pending == 0 || spec.max_ack_pending < -1 {
        return bad(format!("consumer {d}: max_ack_pending must be at least 1, or -1 for unbounded"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::StreamKind;
    use std::time::Duration;

    fn spec() -> ConsumerSpec {
        ConsumerSpec {
            stream: StreamKind::Requests,
            durable: "workers".into(),
            filter_subject: "clawhive.req.>".into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 4,
            max_ack_pending: 64,
        }
    }

    #[test]
    fn filters_must_stay_inside_the_stream() {
        assert!(within("ns.req.>", "ns.req.>"));
        assert!(within("ns.req.acme.*", "ns.req.>"));
        assert!(within("ns.req.acme.default", "ns.req.>"));
        assert!(!within("ns.req", "ns.req.>"));
        assert!(!within("ns.req.", "ns.req.>"));
        assert!(!within("ns.req..x", "ns.req.>"));
        assert!(!within("ns.reply.>", "ns.req.>"));
        assert!(!within("*.req.>", "ns.req.>"));
        assert!(!within(">", "ns.req.>"));
    }

    #[test]
    fn specs_are_checked() {
        validate(&spec()).unwrap();
        validate(&ConsumerSpec { max_deliver: -1, max_ack_pending: -1, ..spec() }).unwrap();
        for bad in [
            ConsumerSpec { durable: "a.b".into(), ..spec() },
            ConsumerSpec { durable: String::new(), ..spec() },
            ConsumerSpec { filter_subject: String::new(), ..spec() },
            ConsumerSpec { ack_wait: Duration::ZERO, ..spec() },
            ConsumerSpec { max_deliver: 0, ..spec() },
            ConsumerSpec { max_ack_pending: -2, ..spec() },
        ] {
            assert!(matches!(validate(&bad), Err(BusError::Consume(_))), "{bad:?} passed");
        }
    }
}
