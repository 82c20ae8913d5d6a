//! The port's ordered `(name, value)` list ⇄ NATS headers.
//!
//! async-nats panics on invalid names or values when given plain strings, so
//! everything goes through the fallible parsers and comes back as an error
//! message for the caller.

use crate::port::Headers;
use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue};

pub(super) fn to_nats(headers: &Headers) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, v) in headers {
        let parsed: HeaderName = name.parse().map_err(|e| format!("bad header name {name:?}: {e}"))?;
        map.append(parsed, value(v)?);
    }
    Ok(map)
}

pub(super) fn value(v: &str) -> Result<HeaderValue, String> {
    v.parse().map_err(|e| format!("bad header value {v:?}: {e}"))
}

/// NATS keeps headers in a hash map, so the order of names is lost; sort them
/// for a stable result. Values of one name keep their order.
pub(super) fn from_nats(map: Option<&HeaderMap>) -> Headers {
    let Some(map) = map else { return Headers::new() };
    let mut names: Vec<_> = map.iter().collect();
    names.sort_by(|a, b| AsRef::<str>::as_ref(a.0).cmp(b.0.as_ref()));
    names
        .into_iter()
        .flat_map(|(name, values)| {
            let name: &str = name.as_ref();
            values.iter().map(move |v| (name.to_string(), v.as_str().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_repeated_values() {
        let headers: Headers = vec![
            ("traceparent".into(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            ("x-a".into(), "1".into()),
            ("x-a".into(), "2".into()),
        ];
        let map = to_nats(&headers).unwrap();
        assert_eq!(from_nats(Some(&map)), headers);
    }

    #[test]
    fn invalid_headers_are_errors_not_panics() {
        assert!(to_nats(&vec![("bad:name".into(), "v".into())]).is_err());
        assert!(to_nats(&vec![("name".into(), "line\r\nbreak".into())]).is_err());
        assert!(from_nats(None).is_empty());
    }
}
