//! `PATCH /admin/knobs` is atomic: concurrent patches never undo each other, readers never see
//! half of one, and a refused patch changes nothing.

use std::sync::Arc;

use podid_emulator::testing::*;
use reqwest::Method;
use serde_json::json;

const ROUNDS: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_are_all_kept_and_never_seen_half_applied() {
    let emu = Arc::new(Emulator::start(&small_world()).await);
    let arm = {
        let emu = emu.clone();
        tokio::spawn(async move {
            for n in 1..=ROUNDS {
                emu.set_knobs(json!({"arm": {"lroDurationMs": n, "retryAfterSecs": n}}))
                    .await;
            }
        })
    };
    let imds = {
        let emu = emu.clone();
        tokio::spawn(async move {
            for n in 1..=ROUNDS {
                emu.set_knobs(json!({"imds": {"propagationDelayMs": n}}))
                    .await;
            }
        })
    };
    let reader = {
        let emu = emu.clone();
        tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let knobs = emu.admin_get("/admin/knobs").await;
                let duration = &knobs["arm"]["lroDurationMs"];
                if duration != 500 {
                    assert_eq!(duration, &knobs["arm"]["retryAfterSecs"], "{knobs}");
                }
            }
        })
    };
    for task in [arm, imds, reader] {
        task.await.expect("the task finishes");
    }
    let knobs = emu.admin_get("/admin/knobs").await;
    assert_eq!(knobs["arm"]["lroDurationMs"], ROUNDS, "{knobs}");
    assert_eq!(knobs["arm"]["retryAfterSecs"], ROUNDS, "{knobs}");
    assert_eq!(knobs["imds"]["propagationDelayMs"], ROUNDS, "{knobs}");
}

#[tokio::test]
async fn a_refused_patch_changes_nothing() {
    let emu = Emulator::start(&small_world()).await;
    let before = emu.admin_get("/admin/knobs").await;
    let reply = emu
        .admin(
            Method::PATCH,
            "/admin/knobs",
            Some(&json!({"arm": {"lroDurationMs": 5}, "imds": {"tokenVersion": 3}})),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 400, "{}", reply.body);
    assert!(
        reply.body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid knobs:")),
        "{}",
        reply.body
    );
    assert_eq!(emu.admin_get("/admin/knobs").await, before);
    emu.shutdown().await;
}
