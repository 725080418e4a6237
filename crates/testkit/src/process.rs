//! Child processes of tests (podid's and upstream's binaries, benchmarks).

use std::net::SocketAddr;

use tokio::process::Command;

/// Proxy variables, in both spellings that HTTP stacks read (Go's, curl's, reqwest's).
const PROXY_VARIABLES: [&str; 8] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];

/// Removes the proxy settings of this process's environment from the child's: a test's
/// binaries talk only to loopback listeners, and a proxy from the developer's shell would
/// send that traffic somewhere else.
pub fn without_proxies(command: &mut Command) -> &mut Command {
    for variable in PROXY_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// The address a podid binary's JSON log (`--log-format=json`) says `listener` is bound to,
/// once it has said so. Tests start podid's binaries on port 0 and read the port here: a port
/// picked free beforehand can be taken by another process before the binary binds it.
pub fn logged_listener(log: &str, listener: &str) -> Option<SocketAddr> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|entry| entry["fields"].clone())
        .filter(|fields| fields["message"] == "listening" && fields["listener"] == listener)
        .find_map(|fields| fields["address"].as_str()?.parse().ok())
}

/// A loopback port free now, for a binary that cannot report the port it bound (upstream's)
/// or a caller that starts again on other ports: another process may take it first, and the
/// binary then fails to listen.
pub fn free_loopback_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"{"timestamp":"2026-11-30T14:00:00Z","level":"WARN","fields":{"message":"deprecated flag accepted and ignored","flag":"--enableScaleFeatures"},"target":"podid_nmi::agent"}
{"timestamp":"2026-11-30T14:00:00Z","level":"INFO","fields":{"message":"listening","listener":"metadata","address":"127.0.0.1:40001"},"target":"podid_nmi::agent"}
plain text from somewhere else
{"timestamp":"2026-11-30T14:00:00Z","level":"INFO","fields":{"message":"listening","listener":"probe","address":"0.0.0.0:40002"},"target":"podid_nmi::agent"}
{"timestamp":"2026-11-30T14:00:00Z","level":"INFO","fields":{"message":"listen"#;

    #[test]
    fn a_listener_is_found_by_name_in_a_log_still_being_written() {
        assert_eq!(
            logged_listener(LOG, "probe"),
            Some("0.0.0.0:40002".parse().unwrap())
        );
        assert_eq!(
            logged_listener(LOG, "metadata"),
            Some("127.0.0.1:40001".parse().unwrap())
        );
    }

    #[test]
    fn a_listener_not_logged_yet_is_none() {
        assert_eq!(logged_listener(LOG, "metrics"), None);
        assert_eq!(logged_listener("", "probe"), None);
    }
}
