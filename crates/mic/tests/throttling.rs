//! ARM's subscription-wide throttling against the real emulator: a `SubscriptionRequestsThrottled`
//! 429 pauses every scale set of that subscription for its `Retry-After`, instead of each one
//! retrying on its own backoff into the same empty bucket, and everything converges once ARM
//! lets writes through again.

mod support;

use std::time::Duration;

use podid_testkit::wait_for;
use serde_json::json;
use support::*;

/// The emulator's write bucket refills this fast, so its 429 says `Retry-After: 2`.
const REFILL_PER_SECOND: f64 = 0.5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_subscription_holds_every_scale_set_for_retry_after() {
    let mut h = Harness::new("mic-throttled").await;
    let first = h.vmss_node(POOL, 0).await;
    let second = h.vmss_node(POOL2, 0).await;
    // One write for the whole subscription: of the two scale sets' PATCHes, one is refused.
    // The emulator's clock is manual, so the bucket stays empty until the test moves it.
    h.emu
        .set_knobs(json!({"arm": {"lroMode": "async", "lroPolls": 1,
            "subscriptionWrites": {"capacity": 1.0, "refillPerSecond": REFILL_PER_SECOND}}}))
        .await;
    for (name, uami) in [("a", "id-a"), ("b", "id-b"), ("c", "id-c")] {
        h.identity(name, NODE_RG, uami).await;
        h.binding(name, name, name).await;
    }
    h.start_mic(test_settings()).await;
    h.pod("a", "a", &first).await;
    h.pod("b", "b", &second).await;

    let throttled = wait_for("a PATCH refused with 429", PATIENCE, || async {
        for (pool, node) in [(POOL, &first), (POOL2, &second)] {
            if h.patches(pool).await.contains(&429) {
                return Ok((pool, node.clone()));
            }
        }
        Err("none yet".to_owned())
    })
    .await;
    let (other_pool, other_node) = if throttled.0 == POOL {
        (POOL2, second.clone())
    } else {
        (POOL, first.clone())
    };
    // A new need on the scale set ARM did not refuse: the subscription is paused for it too.
    let other_patches = h.patches(other_pool).await;
    h.pod("c", "c", &other_node).await;
    // Well within Retry-After (2 s), and ten times MIC's own first backoff in these settings.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        h.patches(throttled.0).await,
        vec![429],
        "the refused scale set waits for Retry-After"
    );
    assert_eq!(
        h.patches(other_pool).await,
        other_patches,
        "the other scale set of the subscription waits too"
    );

    // ARM lets writes through again: both converge, with no second 429.
    h.emu
        .set_knobs(json!({"arm": {"subscriptionWrites": {"capacity": 10.0,
            "refillPerSecond": REFILL_PER_SECOND}}}))
        .await;
    h.emu.advance_clock(30).await;
    for pod in ["a", "b", "c"] {
        h.wait_status(&h.aai_name(pod, pod), "Assigned").await;
    }
    let (pool_ids, pool2_ids): (&[&str], &[&str]) = if other_pool == POOL {
        (&["kubelet", "id-a", "id-c"], &["id-b"])
    } else {
        (&["kubelet", "id-a"], &["id-b", "id-c"])
    };
    h.wait_identities(POOL, pool_ids).await;
    h.wait_identities(POOL2, pool2_ids).await;
    let mut statuses = h.patches(POOL).await;
    statuses.extend(h.patches(POOL2).await);
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(refused, 1, "one 429 in all: {statuses:?}");
    h.check_invariant(machine_of(&h)).await;
    h.finish().await;
}
