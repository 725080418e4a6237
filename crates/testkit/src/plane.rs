//! Finding the control plane for this test process: the one `scripts/test` started (named by
//! `PODID_KUBECONFIG`), or a private one started on demand and stopped when the process exits.
//!
//! The user's `KUBECONFIG` and `~/.kube/config` are never read: tests must not reach a real cluster.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::Error;

/// Names the kubeconfig of an already running test control plane.
pub const KUBECONFIG_ENV: &str = "PODID_KUBECONFIG";

/// Returns the kubeconfig path of the control plane these tests should use, starting one if
/// `PODID_KUBECONFIG` is not set.
pub async fn kubeconfig_path() -> Result<PathBuf, Error> {
    match std::env::var_os(KUBECONFIG_ENV) {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => start_private_plane().await,
    }
}

fn control_plane_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/control-plane")
}

async fn start_private_plane() -> Result<PathBuf, Error> {
    let script = control_plane_script();
    let state_dir = std::env::temp_dir().join(crate::names::unique_name(&format!(
        "podid-control-plane-{}",
        std::process::id()
    )));
    let failed = |detail: String| Error::ControlPlane {
        script: script.display().to_string(),
        detail,
    };
    // The watchdog exists before the plane does, so even a start that fails half-way is cleaned up.
    spawn_watchdog(&script, &state_dir).map_err(|e| failed(format!("no watchdog: {e}")))?;
    tracing::info!(state_dir = %state_dir.display(), "starting a private control plane");
    let output = tokio::process::Command::new(&script)
        .arg("up")
        .env("PODID_CONTROL_PLANE_DIR", &state_dir)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Err(failed(format!(
            "{}; its output:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(state_dir.join("kubeconfig"))
}

/// A detached shell that waits for this process to disappear, then stops the plane.
///
/// libtest ends with `process::exit`, so no destructor would run; the watchdog also covers panics
/// and kills. It runs in its own process group so a Ctrl-C on the test run does not kill it first.
fn spawn_watchdog(script: &Path, state_dir: &Path) -> std::io::Result<()> {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"while kill -0 "$1" 2>/dev/null; do sleep 0.5; done; exec "$2" down"#)
        .arg("podid-control-plane-watchdog")
        .arg(std::process::id().to_string())
        .arg(script)
        .env("PODID_CONTROL_PLANE_DIR", state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
}
