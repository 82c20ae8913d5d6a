//! NATS subject syntax: tokens separated by `.`, `*` matches one token, `>`
//! (last) matches one or more. The same rules the client and server apply.

/// Whether `subject` (no wildcards) matches `pattern`.
pub(crate) fn matches(pattern: &str, subject: &str) -> bool {
    let (mut p, mut s) = (pattern.split('.'), subject.split('.'));
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some(a), Some(b)) if a == "*" || a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some subject matches both patterns (JetStream refuses overlapping
/// consumer filters on a work-queue stream).
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == "*" || y == "*" || x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn framing_ok(s: &str) -> bool {
    !s.is_empty() && !s.contains([' ', '\t', '\r', '\n'])
}

/// A subject one may publish to (as the NATS client checks it, plus no
/// wildcards and no empty tokens, which the server would not route).
pub(crate) fn valid_publish_subject(s: &str) -> bool {
    valid_subscribe_subject(s) && s.split('.').all(|t| t != "*" && t != ">")
}

/// A subject or pattern one may subscribe to.
pub(crate) fn valid_subscribe_subject(s: &str) -> bool {
    framing_ok(s) && s.split('.').all(|t| !t.is_empty()) && !s.split('.').rev().skip(1).any(|t| t == ">")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_subjects_match_exactly() {
        assert!(matches("a.b.c", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b.d"));
    }

    #[test]
    fn star_matches_exactly_one_token() {
        assert!(matches("a.*.c", "a.b.c"));
        assert!(matches("*.b.*", "a.b.c"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(!matches("a.*", "a"));
        assert!(!matches("a.*.c", "a.b.d"));
    }

    #[test]
    fn gt_matches_one_or_more_trailing_tokens() {
        assert!(matches("a.>", "a.b"));
        assert!(matches("a.>", "a.b.c.d"));
        assert!(matches(">", "a"));
        assert!(!matches("a.>", "a"));
        assert!(!matches("a.>", "b.c"));
        assert!(matches("ns.req.*.>", "ns.req.acme.default"));
        assert!(!matches("ns.req.*.>", "ns.req.acme"));
    }

    #[test]
    fn wildcards_are_whole_tokens_only() {
        assert!(!matches("a.b*", "a.bc"));
        assert!(matches("a.b*", "a.b*"));
        assert!(!matches("a.>x", "a.b"));
    }

    #[test]
    fn overlap_of_patterns() {
        assert!(overlaps("a.>", "a.b.c"));
        assert!(overlaps("a.*.c", "a.b.*"));
        assert!(overlaps("a.>", "*.b"));
        assert!(overlaps("a.b", "a.b"));
        assert!(!overlaps("a.b", "a.c"));
        assert!(!overlaps("a.*", "a.b.c"));
        assert!(!overlaps("a.>", "a"));
        assert!(!overlaps("ns.req.acme.>", "ns.req.other.>"));
    }

    #[test]
    fn subject_syntax() {
        assert!(valid_publish_subject("ns.req.acme.default"));
        for bad in ["", "a..b", ".a", "a.", "a b", "a.*", "a.>", "a\r\nb"] {
            assert!(!valid_publish_subject(bad), "{bad:?}");
        }
        assert!(valid_subscribe_subject("ns.>"));
        assert!(valid_subscribe_subject("*.b.*"));
        for bad in ["", "a..b", "a.>.b", "a\tb", "a."] {
            assert!(!valid_subscribe_subject(bad), "{bad:?}");
        }
    }
}
