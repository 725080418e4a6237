//! The `nmi` binary with upstream's flags, iptables off, against the test control plane and
//! the emulator's IMDS: it serves a pod's token, then stops on SIGTERM.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use podid_api::AssignedIdentityState;
use podid_testkit::wait_for;
use support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_binary_serves_tokens_and_stops_on_sigterm() {
    // The in-process NMI only provides the emulator, namespace and helpers; it listens on
    // other ports.
    let harness = Nmi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubelet = dir.path().join("kubelet");
    std::fs::write(&kubelet, "KUBELET_FLAGS=--network-plugin=cni\n").unwrap();
    let (port, host_port, probe, metrics) = (free_port(), free_port(), free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_nmi"))
        .args([
            &format!("--node={}", harness.node),
            "--nmi-port",
            &port.to_string(),
            &format!("--host-token-port={host_port}"),
            &format!("--http-probe-port={probe}"),
            &format!("--prometheus-port={metrics}"),
            "--manage-iptables=false",
            &format!("--imds-endpoint={}", harness.emu.imds_base(MACHINE)),
            &format!("--kubelet-config={}", kubelet.display()),
            "--enableScaleFeatures=true",
            "--retry-attempts-for-created=1",
            "--log-format=json",
        ])
        .env("KUBECONFIG", harness.env.kubeconfig_path())
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the nmi binary starts");

    let http = plain_client();
    wait_for("the binary's probe", Duration::from_secs(60), || {
        let http = http.clone();
        async move {
            let response = http
                .get(format!("http://127.0.0.1:{probe}/healthz"))
                .send()
                .await
                .ok()?;
            (response.text().await.ok()? == "Active").then_some(())
        }
    })
    .await;
    let mut pod = harness.pod("bin", &[("aadpodidbinding", "bin")]).await;
    pod.metadata = ([127, 0, 0, 1], port).into();
    let alpha = harness.identity("alpha", ALPHA_CLIENT, None);
    harness
        .assign(&pod, &alpha, Some(AssignedIdentityState::Assigned))
        .await;
    let answer = pod.token(VAULT, "").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.client_id(), ALPHA_CLIENT);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    harness.stop().await;
}
