//! The admin API's clock (wall and manual modes) and held requests (the `hold` fault), over real
//! HTTP, and the harness started from the seed world.

use podid_emulator::testing::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

async fn clock(emu: &Emulator) -> Value {
    emu.admin_get("/admin/clock").await
}

fn now_ms(clock: &Value) -> i64 {
    clock["nowMs"].as_i64().expect("nowMs")
}

/// Sends an IMDS token request in its own task, so the test can go on while it is held.
fn spawn_token_request(emu: &Emulator, machine: &str) -> JoinHandle<StatusCode> {
    let path = format!("/metadata/identity/oauth2/token?{OK_QUERY}");
    let request = emu
        .http()
        .get(emu.imds_url(machine, &path))
        .header("Metadata", "true");
    tokio::spawn(async move { request.send().await.expect("IMDS answers").status() })
}

async fn answered(task: JoinHandle<StatusCode>) -> StatusCode {
    task.await.expect("the request task ends")
}

#[tokio::test]
async fn a_manual_clock_stands_still_until_advanced() {
    let emu = Emulator::start(&imds_world()).await;
    let start = clock(&emu).await;
    assert_eq!(start["mode"], "manual");
    assert_eq!(start["offsetSeconds"], 0);
    let first = emu.imds_token("vm-single", "").await.json();
    let again = emu.imds_token("vm-single", "").await.json();
    assert_eq!(first["access_token"], again["access_token"]);
    assert_eq!(again["expires_in"], "86399", "no time passed");
    assert_eq!(now_ms(&clock(&emu).await), now_ms(&start));

    emu.advance_clock_ms(1500).await;
    let moved = clock(&emu).await;
    assert_eq!(now_ms(&moved) - now_ms(&start), 1500);
    emu.advance_clock(100).await;
    let now = clock(&emu).await;
    assert_eq!(now["offsetSeconds"], 101);
    let later = emu.imds_token("vm-single", "").await.json();
    assert_eq!(later["access_token"], first["access_token"]);
    let seconds = |v: &Value| -> i64 { v.as_str().and_then(|s| s.parse().ok()).expect("seconds") };
    let left = seconds(&later["expires_on"]) - now["now"].as_i64().expect("now");
    assert_eq!(seconds(&later["expires_in"]), left);
    assert!(
        (86_297..=86_298).contains(&left),
        "{left}: 101.5 s of 86399 are gone"
    );
}

#[tokio::test]
async fn a_wall_clock_can_be_frozen_and_a_reset_returns_to_the_start_mode() {
    let emu = Emulator::start_with(parse_world(&imds_world()), ClockMode::Wall).await;
    assert_eq!(clock(&emu).await["mode"], "wall");
    emu.set_clock_mode(ClockMode::Manual).await;
    let frozen = clock(&emu).await;
    assert_eq!(frozen["mode"], "manual");
    assert_eq!(now_ms(&clock(&emu).await), now_ms(&frozen));
    emu.advance_clock(60).await;
    assert_eq!(now_ms(&clock(&emu).await) - now_ms(&frozen), 60_000);

    emu.reset().await;
    let reset = clock(&emu).await;
    assert_eq!(reset["mode"], "wall");
    assert_eq!(reset["offsetSeconds"], 0);
}

#[tokio::test]
async fn clock_changes_are_validated() {
    let emu = Emulator::start(&imds_world()).await;
    for body in [
        json!({}),
        json!({"mode": "sideways"}),
        json!({"advanceSeconds": -1}),
        json!({"advance": 5}),
    ] {
        let r = emu.admin(Method::POST, "/admin/clock", Some(&body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert!(r.body["error"].is_string(), "{}", r.body);
    }
    let r = emu
        .admin(
            Method::POST,
            "/admin/clock",
            Some(&json!({"mode": "wall", "advanceSeconds": 30})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (&r.body["mode"], &r.body["offsetSeconds"]),
        (&json!("wall"), &json!(30))
    );
}

#[tokio::test]
async fn held_requests_go_on_one_by_one_or_when_their_rule_is_removed() {
    let emu = Emulator::start(&imds_world()).await;
    let rule = emu
        .hold(json!({"surface": "imds", "machine": "vm-single"}))
        .await;
    let first = spawn_token_request(&emu, "vm-single");
    let held = emu.wait_held(1).await;
    let second = spawn_token_request(&emu, "vm-single");
    let both = emu.wait_held(2).await;
    assert_eq!(both[0], held[0], "oldest first");
    assert_eq!(both[0].rule, rule);
    assert_eq!(both[0].surface, Surface::Imds);
    assert_eq!(
        (both[0].method.as_str(), both[0].path.as_str()),
        ("GET", "/metadata/identity/oauth2/token")
    );
    assert_eq!(both[0].machine.as_deref(), Some("vm-single"));
    // Other machines are not held.
    assert_eq!(emu.imds_token("vm-system", "").await.status, 200);

    emu.release(both[0].id).await;
    assert_eq!(answered(first).await, StatusCode::OK);
    assert_eq!(emu.held().await, vec![both[1].clone()]);
    assert!(!second.is_finished(), "still held");
    let r = emu
        .admin(
            Method::POST,
            &format!("/admin/held/{}/release", both[0].id),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "released already");

    let r = emu
        .admin(Method::DELETE, &format!("/admin/faults/{rule}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(answered(second).await, StatusCode::OK);
    assert!(emu.held().await.is_empty());
    assert_eq!(
        emu.imds_token("vm-single", "").await.status,
        200,
        "the rule is gone"
    );
    let journal = emu.journal(Some(Surface::Imds)).await;
    let held_in_journal = journal.iter().filter(|e| e["fault"] == "hold").count();
    assert_eq!(held_in_journal, 2, "{journal:?}");
}

#[tokio::test]
async fn waiting_for_more_held_requests_than_arrive_answers_408() {
    let emu = Emulator::start(&imds_world()).await;
    let r = emu
        .admin(Method::GET, "/admin/held?atLeast=1&waitSeconds=0", None)
        .await;
    assert_eq!(r.status, StatusCode::REQUEST_TIMEOUT, "{}", r.body);
    assert!(
        r.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("0 request(s) held") && e.contains("at least 1")),
        "{}",
        r.body
    );
    assert_eq!(emu.release_all().await, 0);
}

#[tokio::test]
async fn holds_apply_to_arm_and_entra_and_a_reset_releases_everything() {
    let emu = Emulator::start(&small_world()).await;
    let arm_rule = emu
        .hold(json!({"surface": "arm", "method": "GET", "path": "virtualMachineScaleSets/"}))
        .await;
    let entra_rule = emu
        .hold(json!({"surface": "entra", "clientId": MIC, "times": 1}))
        .await;
    let arm = {
        let request = emu
            .https()
            .get(emu.arm_url(&vmss_path()))
            .bearer_auth(emu.arm_token(MIC));
        tokio::spawn(async move { request.send().await.expect("ARM answers").status() })
    };
    let entra = {
        let request = emu.https().post(emu.v2_url(TENANT)).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", MIC),
            ("client_secret", "mic-secret"),
            ("scope", "https://management.azure.com/.default"),
        ]);
        tokio::spawn(async move { request.send().await.expect("Entra answers").status() })
    };
    let held = emu.wait_held(2).await;
    let rules: Vec<(u64, Surface)> = held.iter().map(|h| (h.rule, h.surface)).collect();
    assert!(rules.contains(&(arm_rule, Surface::Arm)), "{held:?}");
    assert!(rules.contains(&(entra_rule, Surface::Entra)), "{held:?}");
    let entra_held = held
        .iter()
        .find(|h| h.surface == Surface::Entra)
        .expect("the Entra request");
    assert_eq!(entra_held.client_id.as_deref(), Some(MIC));

    emu.reset().await;
    assert_eq!(answered(arm).await, StatusCode::OK);
    assert_eq!(answered(entra).await, StatusCode::OK);
    assert!(
        emu.admin_get("/admin/faults")
            .await
            .as_array()
            .is_some_and(Vec::is_empty)
    );
}

#[tokio::test]
async fn the_seed_world_starts_with_every_machine_and_a_trusted_ca() {
    let emu = Emulator::start_seed().await;
    let machines: Vec<&str> = emu.machines().collect();
    assert_eq!(
        machines,
        [
            "aks-agentpool-23456789-vmss_0",
            "aks-agentpool-23456789-vmss_1",
            "aks-agentpool-23456789-vmss_2",
            "aks-standalone-vm"
        ]
    );
    for base in [emu.arm_base(), emu.entra_base(), emu.admin_base()]
        .into_iter()
        .chain(machines.iter().map(|m| emu.imds_base(m)))
    {
        assert!(
            base.starts_with("http") && base.contains("://127.0.0.1:"),
            "{base}"
        );
    }
    let on_disk = std::fs::read_to_string(emu.ca_file()).expect("the CA file");
    assert_eq!(on_disk, emu.ca_pem());
    let (status, discovery) = emu
        .get_json(&format!(
            "{}/{TENANT}/v2.0/.well-known/openid-configuration",
            emu.entra_base()
        ))
        .await;
    assert_eq!(status, 200, "{discovery}");
    let system = emu.imds_token("aks-standalone-vm", "").await;
    assert_eq!(system.status, 200, "{}", system.body);
    let ca_file = emu.ca_file().to_path_buf();
    emu.shutdown().await;
    assert!(!ca_file.exists(), "the CA file goes with the harness");
}
