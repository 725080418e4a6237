//! The request headers NMI reads. Headers arrive as raw `(name, value)` pairs in the order
//! received; names compare case-insensitively, values byte for byte.

/// One request header as received.
pub type Header<'a> = (&'a str, &'a [u8]);

/// The value of the first header called `name`, as Go's `Header.Get` returns it.
fn first<'a>(headers: &[Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| *value)
}

/// Whether the request carries `Metadata: true`: the first `Metadata` header's value is
/// exactly `true`, lower case (upstream's rule; `True` is refused).
pub fn has_metadata_true(headers: &[Header]) -> bool {
    first(headers, "metadata") == Some(b"true".as_slice())
}

/// Whether the request came through a proxy (`X-Forwarded-For` present), which IMDS refuses.
pub fn is_forwarded(headers: &[Header]) -> bool {
    first(headers, "x-forwarded-for").is_some()
}

/// The pod a host-token request is for, from its `podns` and `podname` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
}

/// The `podns` and `podname` headers, both present, non-empty and UTF-8.
pub fn host_token_pod(headers: &[Header]) -> Option<PodName> {
    let text = |name| {
        first(headers, name)
            .and_then(|value| std::str::from_utf8(value).ok())
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    Some(PodName {
        namespace: text("podns")?,
        name: text("podname")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_must_be_exactly_lower_case_true_in_the_first_header() {
        assert!(has_metadata_true(&[("Metadata", b"true")]));
        assert!(has_metadata_true(&[
            ("metadata", b"true"),
            ("Metadata", b"x")
        ]));
        assert!(!has_metadata_true(&[("Metadata", b"True")]));
        assert!(!has_metadata_true(&[("Metadata", b" true")]));
        assert!(!has_metadata_true(&[("Metadata", b"")]));
        assert!(!has_metadata_true(&[
            ("Metadata", b"x"),
            ("Metadata", b"true")
        ]));
        assert!(!has_metadata_true(&[("Metadata-Flavor", b"true")]));
        assert!(!has_metadata_true(&[]));
    }

    #[test]
    fn any_forwarded_for_header_counts() {
        assert!(is_forwarded(&[("X-Forwarded-For", b"10.0.0.1")]));
        assert!(is_forwarded(&[("x-forwarded-for", b"")]));
        assert!(!is_forwarded(&[("Forwarded", b"for=10.0.0.1")]));
    }

    #[test]
    fn host_token_needs_both_pod_headers() {
        assert_eq!(
            host_token_pod(&[("PodNS", b"team"), ("podname", b"app-0")]),
            Some(PodName {
                namespace: "team".into(),
                name: "app-0".into()
            })
        );
        assert_eq!(host_token_pod(&[("podns", b"team")]), None);
        assert_eq!(
            host_token_pod(&[("podns", b"team"), ("podname", b"")]),
            None
        );
        assert_eq!(
            host_token_pod(&[("podns", b"\xff"), ("podname", b"a")]),
            None
        );
    }
}
