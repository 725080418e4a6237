//! Child processes of tests (podid's and upstream's binaries, benchmarks).

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
