//! The `nmi` binary with upstream's flags, iptables off, against the test control plane and
//! the emulator's IMDS: it serves a pod's token, then stops on SIGTERM.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use podid_api::AssignedIdentityState;
use podid_testkit::{logged_listener, try_wait_for};
use support::*;

#[tokio::test]
async fn the_binary_serves_tokens_and_stops_on_sigterm() {
    // The in-process NMI only provides the emulator, namespace and helpers; it listens on
    // other ports.
    let harness = Nmi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubelet = dir.path().join("kubelet");
    std::fs::write(&kubelet, "KUBELET_FLAGS=--network-plugin=cni\n").unwrap();
    let log_path = dir.path().join("nmi.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // Every port 0: the bound ones are read from the log, so none can be taken first.
    let mut child = Command::new(env!("CARGO_BIN_EXE_nmi"))
        .args([
            &format!("--node={}", harness.node),
            "--nmi-port",
            "0",
            "--host-token-port=0",
            "--http-probe-port=0",
            "--prometheus-port=0",
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
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the nmi binary starts");

    let http = plain_client();
    let listening = |name| logged_listener(&read_log(), name).map(|address| address.port());
    let ready = try_wait_for("the binary's probe", Duration::from_secs(60), || {
        let (http, probe, exited) = (http.clone(), listening("probe"), child.try_wait());
        async move {
            if let Ok(Some(status)) = exited {
                return Some(Some(status));
            }
            let response = http
                .get(format!("http://127.0.0.1:{}/healthz", probe?))
                .send()
                .await
                .ok()?;
            (response.text().await.ok()? == "Active").then_some(None)
        }
    })
    .await;
    match ready {
        Ok(None) => {}
        Ok(Some(status)) => panic!("nmi exited ({status}):\n{}", read_log()),
        Err(error) => panic!("{error}\n{}", read_log()),
    }
    let port = listening("metadata").expect("the metadata listener is logged");
    let mut pod = harness.pod("bin", &[("aadpodidbinding", "bin")]).await;
    pod.metadata = ([127, 0, 0, 1], port).into();
    let alpha = harness.identity("alpha", ALPHA_CLIENT, None);
    harness
        .assign(&pod, &alpha, Some(AssignedIdentityState::Assigned))
        .await;
    let answer = pod.token(VAULT, "").await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.text, read_log());
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
    assert!(status.success(), "{status}\n{}", read_log());
    harness.stop().await;
}
