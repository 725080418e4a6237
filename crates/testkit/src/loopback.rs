//! Tests may only reach a control plane on 127.0.0.0/8: never a developer's real cluster.

use std::net::Ipv4Addr;

use crate::Error;

/// Accepts a cluster URL's host only when it is an IPv4 literal in 127.0.0.0/8.
///
/// Host names (even `localhost`) are refused: they go through name resolution, which a test
/// machine does not control.
pub fn ensure_loopback(cluster_url: &str, host: Option<&str>) -> Result<Ipv4Addr, Error> {
    host.and_then(|h| h.parse::<Ipv4Addr>().ok())
        .filter(Ipv4Addr::is_loopback)
        .ok_or_else(|| Error::NotLoopback {
            server: cluster_url.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_whole_127_range() {
        for host in ["127.0.0.1", "127.1.2.3", "127.255.255.254"] {
            let url = format!("https://{host}:6443");
            assert_eq!(
                ensure_loopback(&url, Some(host)).ok(),
                host.parse().ok(),
                "{host}"
            );
        }
    }

    #[test]
    fn refuses_everything_else() {
        for host in [
            Some("10.0.0.1"),
            Some("128.0.0.1"),
            Some("169.254.169.254"),
            Some("localhost"),
            Some("[::1]"),
            Some("::1"),
            Some("kubernetes.default.svc"),
            Some(""),
            None,
        ] {
            let err = ensure_loopback("https://example:6443", host).unwrap_err();
            assert!(err.to_string().contains("127.0.0.0/8"), "{host:?}: {err}");
        }
    }
}
