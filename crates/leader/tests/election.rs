//! Leader election against the real kube-apiserver: one leader of two, hand-over on a graceful
//! stop and on a crash, step-down when the Lease is taken over, and upstream MIC's Endpoints lock
//! blocking podid while it is live. Each test works in a fresh namespace and acts as the MIC
//! ServiceAccount with exactly the RBAC rules the elector needs (`mic_role`). Leases are 2 s;
//! the only timing assertion is a wait with a generous timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use podid_leader::{LEADER_ANNOTATION, LeaderConfig, LeaderError, LeaderRecord};
use podid_testkit::{TestEnv, wait_for};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const LOCK: &str = "aad-pod-identity-mic";
const SERVICE_ACCOUNT: &str = "mic";
const LEASE: Duration = Duration::from_secs(2);
const PATIENCE: Duration = Duration::from_secs(30);

/// One running elector.
struct Candidate {
    identity: String,
    leading: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), LeaderError>>,
}

impl Candidate {
    fn start(client: Client, namespace: &str, identity: &str) -> Self {
        let config = LeaderConfig::new(identity)
            .with_lock(namespace, LOCK)
            .with_lease_duration(LEASE);
        let (stop, stopped) = oneshot::channel::<()>();
        let (leading, task) = podid_leader::spawn(client, config, async move {
            let _ = stopped.await;
        });
        Self {
            identity: identity.to_owned(),
            leading,
            stop: Some(stop),
            task,
        }
    }

    fn leads(&self) -> bool {
        *self.leading.borrow()
    }

    async fn wait_until_leading(&self) {
        let what = format!("{} to lead", self.identity);
        wait_for(&what, PATIENCE, || async { self.leads().then_some(()) }).await;
    }

    /// A graceful stop: the elector releases its locks and ends without error.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let ended = tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("the elector stops");
        ended
            .expect("the task ran")
            .expect("the elector ended cleanly");
        assert!(!*self.leading.borrow(), "a stopped elector does not lead");
    }
}

/// What the elector needs, and nothing more: the rules MIC's RBAC must grant it in the lock's
/// namespace.
fn mic_role() -> Vec<PolicyRule> {
    let rule = |group: &str, resource: &str| PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        verbs: ["get", "create", "update"].map(str::to_owned).to_vec(),
        ..PolicyRule::default()
    };
    vec![rule("coordination.k8s.io", "leases"), rule("", "endpoints")]
}

/// A fresh namespace where ServiceAccount `mic` has `rules`, and a client acting as it.
async fn namespace_with_rules(env: &TestEnv, rules: Vec<PolicyRule>) -> (String, Client) {
    let ns = env.namespace("leader").await.name().to_owned();
    let admin = env.admin();
    let meta = |name: &str| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(ns.clone()),
        ..ObjectMeta::default()
    };
    let role = Role {
        metadata: meta("mic-leader-election"),
        rules: Some(rules),
    };
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("the role is created");
    let binding = RoleBinding {
        metadata: meta("mic-leader-election"),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "Role".to_owned(),
            name: "mic-leader-election".to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: SERVICE_ACCOUNT.to_owned(),
            namespace: Some(ns.clone()),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin, &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("the role binding is created");
    let client = env.as_service_account(&ns, SERVICE_ACCOUNT);
    (ns, client)
}

async fn lease_record(admin: &Client, ns: &str) -> Option<LeaderRecord> {
    let lease = Api::<Lease>::namespaced(admin.clone(), ns)
        .get_opt(LOCK)
        .await
        .expect("the Lease is readable")?;
    Some(LeaderRecord::from_lease(&lease.spec.unwrap_or_default()))
}

async fn endpoints_record(admin: &Client, ns: &str) -> Option<LeaderRecord> {
    let endpoints = Api::<Endpoints>::namespaced(admin.clone(), ns)
        .get_opt(LOCK)
        .await
        .expect("the Endpoints are readable")?;
    let annotation = endpoints.metadata.annotations?.remove(LEADER_ANNOTATION)?;
    Some(LeaderRecord::from_annotation(&annotation).expect("the annotation parses"))
}

/// Writes the Endpoints lock as upstream's client-go would: create, or replace what is there.
async fn write_upstream_lock(admin: &Client, ns: &str, record: &LeaderRecord) {
    let api = Api::<Endpoints>::namespaced(admin.clone(), ns);
    let pp = PostParams::default();
    let mut endpoints = api
        .get_opt(LOCK)
        .await
        .expect("readable")
        .unwrap_or_else(|| Endpoints {
            metadata: ObjectMeta {
                name: Some(LOCK.to_owned()),
                ..ObjectMeta::default()
            },
            ..Endpoints::default()
        });
    let fresh = endpoints.metadata.resource_version.is_none();
    endpoints
        .meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(LEADER_ANNOTATION.to_owned(), record.to_annotation());
    if fresh {
        api.create(&pp, &endpoints).await.expect("created");
    } else {
        api.replace(LOCK, &pp, &endpoints).await.expect("replaced");
    }
}

fn upstream_record(holder: &str, seconds: i32, renewed: Timestamp) -> LeaderRecord {
    LeaderRecord {
        holder_identity: holder.to_owned(),
        lease_duration_seconds: seconds,
        acquire_time: Some(renewed),
        renew_time: Some(renewed),
        leader_transitions: 4,
    }
}

#[tokio::test]
async fn exactly_one_of_two_electors_leads_and_both_locks_name_it() {
    let env = TestEnv::get().await;
    let (ns, client) = namespace_with_rules(env, mic_role()).await;
    let a = Candidate::start(client.clone(), &ns, "podid-a");
    let b = Candidate::start(client, &ns, "podid-b");
    wait_for("one elector to lead", PATIENCE, || async {
        (a.leads() || b.leads()).then_some(())
    })
    .await;
    // Several renewals later the same one still leads, alone.
    tokio::time::sleep(LEASE * 2).await;
    assert!(a.leads() != b.leads(), "a: {}, b: {}", a.leads(), b.leads());
    let leader = if a.leads() { "podid-a" } else { "podid-b" };
    let admin = env.admin();
    let lease = lease_record(&admin, &ns).await.expect("a Lease");
    assert_eq!(lease.holder_identity, leader);
    assert_eq!(lease.lease_duration_seconds, 2);
    // Mirrored in client-go's format, so an upstream MIC started now would wait.
    let endpoints = endpoints_record(&admin, &ns)
        .await
        .expect("an Endpoints lock");
    assert_eq!(endpoints.holder_identity, leader);
    assert_eq!(endpoints.lease_duration_seconds, 2);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_gracefully_stopped_leader_releases_and_the_standby_takes_over() {
    let env = TestEnv::get().await;
    let (ns, client) = namespace_with_rules(env, mic_role()).await;
    let first = Candidate::start(client.clone(), &ns, "podid-first");
    first.wait_until_leading().await;
    let standby = Candidate::start(client, &ns, "podid-standby");
    first.stop().await;
    let admin = env.admin();
    // Released, or already taken by the standby: never still naming the stopped leader.
    let lease = lease_record(&admin, &ns).await.expect("a Lease");
    assert_ne!(lease.holder_identity, "podid-first");
    standby.wait_until_leading().await;
    let lease = lease_record(&admin, &ns).await.expect("a Lease");
    assert_eq!(lease.holder_identity, "podid-standby");
    assert!(lease.leader_transitions >= 1, "{lease:?}");
    standby.stop().await;
    let released = lease_record(&admin, &ns).await.expect("a Lease");
    assert_eq!(released.holder_identity, "");
    assert_eq!(released.lease_duration_seconds, 1);
    let endpoints = endpoints_record(&admin, &ns)
        .await
        .expect("an Endpoints lock");
    assert_eq!(endpoints.holder_identity, "");
}

#[tokio::test]
async fn a_crashed_leader_is_replaced_once_its_lease_expires() {
    let env = TestEnv::get().await;
    let (ns, client) = namespace_with_rules(env, mic_role()).await;
    let crashed = Candidate::start(client.clone(), &ns, "podid-crashed");
    crashed.wait_until_leading().await;
    // No release: the task is gone, the lock still names it.
    crashed.task.abort();
    let standby = Candidate::start(client, &ns, "podid-standby");
    standby.wait_until_leading().await;
    let lease = lease_record(&env.admin(), &ns).await.expect("a Lease");
    assert_eq!(lease.holder_identity, "podid-standby");
    standby.stop().await;
}

#[tokio::test]
async fn a_leader_whose_lease_is_taken_over_stops_leading() {
    let env = TestEnv::get().await;
    let (ns, client) = namespace_with_rules(env, mic_role()).await;
    let mut leader = Candidate::start(client, &ns, "podid-leader");
    leader.wait_until_leading().await;
    let api = Api::<Lease>::namespaced(env.admin(), &ns);
    let mut lease = api.get(LOCK).await.expect("the Lease exists");
    let intruder = upstream_record("intruder", 3600, Timestamp::now());
    lease.spec = Some(intruder.to_lease());
    // Retried: the leader's own renewals may win the race for a resourceVersion.
    wait_for("the Lease to be overwritten", PATIENCE, || {
        let (api, mut lease) = (api.clone(), lease.clone());
        async move {
            let current = api.get(LOCK).await?;
            lease.metadata.resource_version = current.metadata.resource_version;
            api.replace(LOCK, &PostParams::default(), &lease).await
        }
    })
    .await;
    tokio::time::timeout(PATIENCE, leader.leading.wait_for(|leads| !*leads))
        .await
        .expect("the leader steps down in time")
        .expect("the elector is running");
    // The intruder's hour-long lease keeps it a candidate.
    tokio::time::sleep(LEASE).await;
    assert!(!leader.leads());
    leader.stop().await;
    let lease = lease_record(&env.admin(), &ns).await.expect("a Lease");
    assert_eq!(
        lease.holder_identity, "intruder",
        "a candidate releases nothing"
    );
}

#[tokio::test]
async fn a_live_upstream_endpoints_lock_blocks_podid_until_it_expires() {
    let env = TestEnv::get().await;
    let (ns, client) = namespace_with_rules(env, mic_role()).await;
    let admin = env.admin();
    // An upstream MIC leads and renews every half second.
    let renewer = {
        let (admin, ns) = (admin.clone(), ns.clone());
        tokio::spawn(async move {
            loop {
                let record = upstream_record("mic-upstream-0", 2, Timestamp::now());
                write_upstream_lock(&admin, &ns, &record).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    wait_for("the upstream lock", PATIENCE, || {
        endpoints_record(&admin, &ns)
    })
    .await;
    let podid = Candidate::start(client, &ns, "podid-0");
    for _ in 0..30 {
        assert!(!podid.leads(), "podid leads while upstream's lock is live");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        lease_record(&admin, &ns).await,
        None,
        "podid wrote nothing while blocked"
    );
    // Upstream stops renewing (its pod is gone): podid takes over once the lock expires.
    renewer.abort();
    podid.wait_until_leading().await;
    let endpoints = endpoints_record(&admin, &ns).await.expect("the lock");
    assert_eq!(endpoints.holder_identity, "podid-0");
    assert_eq!(
        endpoints.leader_transitions, 5,
        "the count continues upstream's"
    );
    podid.stop().await;
}

#[tokio::test]
async fn an_expired_upstream_endpoints_lock_does_not_block_podid() {
    let env = TestEnv::get().await;
    let (ns, client) = namespace_with_rules(env, mic_role()).await;
    let admin = env.admin();
    let an_hour_ago = Timestamp::now() - SignedDuration::from_hours(1);
    write_upstream_lock(&admin, &ns, &upstream_record("mic-old", 1, an_hour_ago)).await;
    let podid = Candidate::start(client, &ns, "podid-0");
    podid.wait_until_leading().await;
    let lease = lease_record(&admin, &ns).await.expect("a Lease");
    assert_eq!(lease.holder_identity, "podid-0");
    podid.stop().await;
}

#[tokio::test]
async fn an_elector_without_rbac_ends_with_a_clear_error() {
    let env = TestEnv::get().await;
    let (ns, client) = namespace_with_rules(env, Vec::new()).await;
    let mut refused = Candidate::start(client, &ns, "podid-0");
    let ended = tokio::time::timeout(PATIENCE, &mut refused.task)
        .await
        .expect("the elector gives up at once")
        .expect("the task ran");
    let message = ended.expect_err("refused").to_string();
    assert!(message.contains("(403)"), "{message}");
    assert!(message.contains("leases"), "{message}");
    assert!(!refused.leads());
}
