//! The controller: watches feed the decisions, a cycle applies them, and one worker per
//! machine talks to ARM (docs/mic.md, "The loop").
//!
//! A cycle runs after any change (debounced), after a worker ends, and when a timer asks for
//! one (grace period, backoff, quarantine, drift refresh, the periodic resync, the end of a
//! burst). It runs only while this replica leads; it never waits for ARM.

mod debounce;
mod events;
mod machines;
mod stores;
mod worker;
mod writer;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use futures::StreamExt;
use kube::{Client, Resource};
use podid_api::{
    AssignedIdentityState, AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding,
};
use podid_azure::arm::{ArmClient, MachineId};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use debounce::Debounce;
pub use events::{COMPONENT, Involved, Severity, reason};
pub use machines::{Backoff, Timing};

use crate::metrics::Metrics;
use crate::{
    AssignedRecord, AssignedView, Diagnostic, Embeds, MachinePolicy, MatchOptions, NodeIndex,
    ObjectRef, Settlement, Waiting, desired, plan_machines, reconcile, settle,
};
use debounce::Arrivals;
use events::Recorder;
use machines::{Machines, Outcome, Step};
use stores::{Changes, Stores};
use writer::{Op, Overlay, Writer, Written};

/// How the controller behaves; [`Settings::default`] is upstream's defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub match_options: MatchOptions,
    /// `--immutable-user-msis`: client IDs never removed.
    pub immutable_client_ids: Vec<String>,
    /// How long an identity stays after its last pod.
    pub removal_grace: Duration,
    /// When a cycle runs after changes: a lone change after a short pause, a burst (such as a
    /// Deployment's pods) once it pauses, so that it is planned at once: one PATCH per scale
    /// set.
    pub debounce: Debounce,
    /// `--syncRetryDuration`: a cycle at least this often.
    pub resync: Duration,
    pub timing: Timing,
    /// `--update-user-msi-max-retry`: times refused identities are dropped and the rest resent.
    pub max_identity_retries: u32,
    /// `--createDeleteBatch`: Kubernetes writes in flight at once.
    pub write_concurrency: usize,
    /// A repeated event is not written again for this long.
    pub event_window: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            match_options: MatchOptions::default(),
            immutable_client_ids: Vec::new(),
            removal_grace: crate::machine::DEFAULT_REMOVAL_GRACE,
            debounce: Debounce::default(),
            resync: Duration::from_secs(3600),
            timing: Timing {
                retry: Backoff {
                    base: Duration::from_secs(1),
                    max: Duration::from_secs(300),
                },
                quarantine: Backoff {
                    base: Duration::from_secs(30),
                    max: Duration::from_secs(30 * 60),
                },
                refresh: Duration::from_secs(180),
                update_recheck: Duration::from_secs(5),
                update_hold: Duration::from_secs(15 * 60),
            },
            max_identity_retries: 2,
            write_concurrency: 20,
            event_window: Duration::from_secs(600),
        }
    }
}

/// What the controller needs of Azure; replaced when the cloud config changes.
#[derive(Clone, Debug)]
pub struct Azure {
    pub arm: ArmClient,
    /// azure.json's `userAssignedIdentityID`: the cluster identity, never removed.
    pub cluster_identity: Option<String>,
}

/// Why [`Controller::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    #[error("shut down")]
    Shutdown,
    /// Upstream exits with code 1 here; so does the `mic` binary.
    #[error("lost leadership")]
    LostLeadership,
}

/// The controller. Build it, then [`Controller::run`] it.
pub struct Controller {
    client: Client,
    azure: watch::Receiver<Option<Azure>>,
    settings: Settings,
    metrics: Metrics,
    active: Arc<AtomicBool>,
}

impl Controller {
    /// `azure` holds the current Azure clients (`None` while the cloud config is unusable).
    pub fn new(
        client: Client,
        azure: watch::Receiver<Option<Azure>>,
        settings: Settings,
        metrics: Metrics,
    ) -> Self {
        Self {
            client,
            azure,
            settings,
            metrics,
            active: Arc::new(AtomicBool::new(false)),
        }
    }

    /// True while the cycle runs (this replica leads): `/healthz` answers `Active`.
    pub fn active(&self) -> Arc<AtomicBool> {
        self.active.clone()
    }

    /// Watches always (a standby keeps warm caches); cycles while `leading` is true. Returns
    /// when `shutdown` completes, or [`Stopped::LostLeadership`] as soon as `leading` turns
    /// false after having been true: no write is made after that.
    pub async fn run(
        self,
        mut leading: watch::Receiver<bool>,
        shutdown: impl Future<Output = ()>,
    ) -> Stopped {
        tokio::pin!(shutdown);
        let changes = Arc::new(Changes::default());
        let embeds = Arc::new(Mutex::new(Embeds::default()));
        let stores = Stores::start(&self.client, changes.clone(), embeds.clone());
        tokio::select! {
            () = stores.ready() => {}
            () = &mut shutdown => return Stopped::Shutdown,
        }
        tracing::info!("caches synced");
        loop {
            if *leading.borrow_and_update() {
                break;
            }
            tokio::select! {
                result = leading.changed() => if result.is_err() { return Stopped::Shutdown },
                () = &mut shutdown => return Stopped::Shutdown,
            }
        }
        tracing::info!("leading: starting the cycle");
        let active = self.active.clone();
        active.store(true, Ordering::SeqCst);
        let mut term = Term::new(self, changes, embeds);
        let stopped = tokio::select! {
            () = term.lead(&stores) => Stopped::Shutdown,
            () = lost(&mut leading) => Stopped::LostLeadership,
            () = &mut shutdown => Stopped::Shutdown,
        };
        active.store(false, Ordering::SeqCst);
        term.workers.abort_all();
        stopped
    }
}

/// Completes when `leading` turns false (or its sender is gone).
async fn lost(leading: &mut watch::Receiver<bool>) {
    while *leading.borrow_and_update() {
        if leading.changed().await.is_err() {
            return;
        }
    }
}

/// One term as leader: the state the cycles share.
struct Term {
    azure: watch::Receiver<Option<Azure>>,
    settings: Settings,
    metrics: Metrics,
    changes: Arc<Changes>,
    arrivals: Arrivals,
    writer: Writer,
    recorder: Recorder,
    overlay: Overlay,
    machines: Machines,
    workers: JoinSet<Outcome>,
}

impl Term {
    fn new(controller: Controller, changes: Arc<Changes>, embeds: Arc<Mutex<Embeds>>) -> Self {
        let Controller {
            client,
            azure,
            settings,
            metrics,
            ..
        } = controller;
        Self {
            writer: Writer::new(client.clone(), metrics.clone(), embeds),
            recorder: Recorder::new(client.clone(), settings.event_window),
            overlay: Overlay::default(),
            machines: Machines::default(),
            workers: JoinSet::new(),
            azure,
            settings,
            metrics,
            arrivals: Arrivals::default(),
            changes,
        }
    }

    async fn lead(&mut self, stores: &Stores) {
        let mut wake = Some(Instant::now());
        let mut inputs_seen = self.changes.inputs();
        loop {
            let sleep = tokio::time::sleep_until(wake.unwrap_or_else(far_future));
            tokio::select! {
                Some(joined) = self.workers.join_next() => {
                    self.finished(joined);
                    wake = Some(Instant::now());
                }
                () = self.changes.changed() => {
                    let now = Instant::now();
                    let inputs = self.changes.inputs();
                    let due = self.arrivals.record(
                        &self.settings.debounce,
                        inputs - inputs_seen,
                        now,
                    );
                    inputs_seen = inputs;
                    let first = self.arrivals.first_unseen().unwrap_or(now);
                    // A wake already due sooner for another reason (a worker, a timer) stays.
                    wake = Some(match wake {
                        Some(w) if w < first => w,
                        _ => due,
                    });
                }
                result = self.azure.changed() => {
                    if result.is_err() {
                        return;
                    }
                    self.machines.forget_backoff();
                    wake = Some(Instant::now());
                }
                () = sleep => {
                    self.arrivals.seen();
                    let started = StdInstant::now();
                    let (next, worked) = self.cycle(stores).await;
                    if worked {
                        self.metrics.cycle(started.elapsed());
                    }
                    wake = Some(next);
                }
            }
        }
    }

    /// One cycle; returns when the next is due at the latest, and whether it did work.
    async fn cycle(&mut self, stores: &Stores) -> (Instant, bool) {
        let now = Instant::now();
        let mut next = now + self.settings.resync;
        let snapshot = stores.snapshot();
        let current = self.overlay.merge(snapshot.assigned);
        let (nodes, node_diagnostics) = NodeIndex::new(&snapshot.nodes);
        let desired = desired(
            &snapshot.pods,
            &snapshot.bindings,
            &snapshot.identities,
            &nodes,
            self.settings.match_options,
        );
        for diagnostic in node_diagnostics.iter().chain(&desired.diagnostics) {
            self.report_diagnostic(diagnostic, &snapshot.identities, &snapshot.bindings);
        }

        let mut plan = reconcile(&current, &desired);
        // A cycle that runs while a burst is still arriving (a worker ended, a timer; the
        // debounce waits for the burst otherwise) holds back what a later change of the burst
        // could undo or repeat, until its end (at most `debounce.max`): ARM work, so that each
        // scale set gets one PATCH for all of it, and the ends of assignments, so that a pod
        // deleted and created again within it keeps its object. New objects and `Assigned` go
        // at once. A deleted pod gets no token meanwhile: NMI serves only pods it knows.
        let hold = self.arrivals.hold(&self.settings.debounce, now);
        if let Some(until) = hold {
            let ending = plan.status.len() + plan.delete.len();
            plan.status
                .retain(|change| change.to != AssignedIdentityState::Unassigned);
            plan.delete.clear();
            if plan.status.len() < ending {
                next = next.min(until);
            }
        }
        let mut worked = !plan.is_empty();
        tracing::debug!(
            pods = snapshot.pods.len(),
            assignments = desired.assignments.len(),
            existing = current.len(),
            create = plan.create.len(),
            replace = plan.replace.len(),
            status = plan.status.len(),
            delete = plan.delete.len(),
            "cycle"
        );

        // ARM work starts before the Kubernetes writes, so that a burst's PATCHes run while its
        // objects are created. The plans do not depend on those writes: a created or replaced
        // object is `Created`, which owns no identity (a replaced one lists what it held in its
        // releasing annotation), and a status change keeps what the object owns.
        let plans = {
            let views: Vec<&AssignedView> = current.iter().map(|r| r.view()).collect();
            let policy = self.policy(now);
            plan_machines(&desired, &views, &nodes, &policy, |machine, id| {
                self.machines.unneeded_for(machine, id, now)
            })
        };
        drop(desired);
        self.machines.record_grace_clocks(&plans, now);
        let azure = self.azure.borrow().clone();
        for plan in &plans {
            if let Some(left) = plan.deferred.values().min() {
                next = next.min(now + *left);
            }
            match self.machines.step(plan, now, &self.settings.timing) {
                Step::Busy => {}
                Step::Idle { recheck } => next = next.min(recheck.unwrap_or(next)),
                Step::Wait(until) => next = next.min(until),
                Step::Work(job) => {
                    if let Some(until) = hold {
                        next = next.min(until);
                        continue;
                    }
                    let Some(azure) = &azure else {
                        tracing::warn!(machine = %job.machine, "no usable cloud config; ARM work waits");
                        continue;
                    };
                    worked = true;
                    // One line per machine's ARM work: what an operator looks for when an
                    // identity is slow to come or go.
                    tracing::info!(machine = %job.machine, add = job.change.add.len(),
                        remove = job.change.remove.len(), read = job.known.is_none(), "ARM work");
                    self.machines.start(&job.machine, &job.change.remove);
                    self.workers.spawn(worker::run(
                        azure.arm.clone(),
                        *job,
                        self.settings.max_identity_retries,
                        self.metrics.clone(),
                    ));
                }
            }
        }
        if let Some(end) = self.machines.next_quarantine_end(now) {
            next = next.min(end);
        }

        let mut ops: Vec<Op> = Vec::new();
        ops.extend(plan.create.into_iter().map(Op::Create));
        ops.extend(plan.replace.into_iter().map(|o| Op::Replace(Box::new(o))));
        ops.extend(plan.status.into_iter().map(|c| Op::Status(c.object, c.to)));
        ops.extend(plan.delete.into_iter().map(Op::Delete));
        let current = self.apply(ops, current, &nodes).await;

        // Workers that ended while this cycle wrote settle their objects now, not a cycle
        // later; the next cycle starts at once, as after any worker.
        while let Some(joined) = self.workers.try_join_next() {
            self.finished(joined);
            next = Instant::now();
        }
        let (observed, leaving) = (self.machines.observed(), self.machines.leaving());
        let mut ops = Vec::new();
        {
            let views: Vec<&AssignedView> = current.iter().map(|r| r.view()).collect();
            let by_ref: HashMap<&ObjectRef, &AssignedRecord> =
                current.iter().map(|r| (r.object(), r.as_ref())).collect();
            for settlement in settle(&views, &nodes, &plans, &observed, &leaving) {
                match settlement {
                    Settlement::Assign(object) => {
                        ops.push(Op::Status(object, AssignedIdentityState::Assigned))
                    }
                    Settlement::Delete(object) => ops.push(Op::Delete(object)),
                    Settlement::Released { object, remaining } => {
                        ops.push(Op::Releasing(object, remaining))
                    }
                    Settlement::Wait {
                        object,
                        reason: Waiting::NotOnMachine,
                    } => {
                        if let Some(existing) = by_ref.get(&object) {
                            self.report_not_on_machine(existing, &nodes, now);
                        }
                    }
                    Settlement::Wait { .. } => {}
                }
            }
        }
        worked |= !ops.is_empty();
        self.apply(ops, current, &nodes).await;
        (next, worked)
    }

    fn finished(&mut self, joined: Result<Outcome, tokio::task::JoinError>) {
        match joined {
            Ok(outcome) => {
                self.machines
                    .finish(&outcome, Instant::now(), &self.settings.timing);
                report_refused(&outcome);
            }
            Err(error) => tracing::error!(%error, "an ARM worker failed"),
        }
    }

    fn policy(&self, now: Instant) -> MachinePolicy {
        let cluster = self
            .azure
            .borrow()
            .as_ref()
            .and_then(|azure| azure.cluster_identity.clone());
        let mut policy = MachinePolicy::default()
            .with_immutable_client_ids(
                self.settings
                    .immutable_client_ids
                    .iter()
                    .map(String::as_str),
            )
            .with_immutable_client_ids(cluster.as_deref());
        policy.removal_grace = self.settings.removal_grace;
        policy.quarantined = self.machines.quarantined(now);
        policy
    }

    /// Performs `ops` and returns `current` with their results, reporting failures as upstream
    /// did. As upstream, `write_concurrency` (`--createDeleteBatch`) bounds the writes in
    /// flight per VM or scale set (per node when the node has no machine), and those groups
    /// proceed in parallel: one global bound made 1,000 pods wait for each other.
    async fn apply(
        &mut self,
        ops: Vec<Op>,
        mut current: Vec<Arc<AssignedRecord>>,
        nodes: &NodeIndex,
    ) -> Vec<Arc<AssignedRecord>> {
        if ops.is_empty() {
            return current;
        }
        let groups = {
            let node_of: HashMap<&ObjectRef, Option<&str>> = current
                .iter()
                .map(|r| (r.object(), r.view().node.as_deref()))
                .collect();
            let mut groups: HashMap<Option<Group>, Vec<Op>> = HashMap::new();
            for op in ops {
                let node = match &op {
                    Op::Create(assignment) => Some(assignment.node.clone()),
                    Op::Replace(object) => object.spec.node_name.clone(),
                    other => node_of
                        .get(&other.object())
                        .copied()
                        .flatten()
                        .map(str::to_owned),
                };
                let group = node.map(|node| match nodes.machine(&node) {
                    Some(machine) => Group::Machine(machine),
                    None => Group::Node(node),
                });
                groups.entry(group).or_default().push(op);
            }
            groups
        };
        let per_group = self.settings.write_concurrency.max(1);
        let writer = self.writer.clone();
        // Handled as they complete, so that no list of thousands of results is held.
        let mut results = futures::stream::iter(groups.into_values().map(|ops| {
            let writer = writer.clone();
            futures::stream::iter(ops)
                .map(move |op| {
                    let writer = writer.clone();
                    async move {
                        let result = writer.write(&op).await;
                        (op, result)
                    }
                })
                .buffer_unordered(per_group)
        }))
        .flatten_unordered(None);

        let mut changed: HashMap<ObjectRef, Option<Arc<AssignedRecord>>> = HashMap::new();
        let mut applied = ByBinding::default();
        let mut removed = ByBinding::default();
        {
            let existing: HashMap<&ObjectRef, &AssignedRecord> =
                current.iter().map(|r| (r.object(), r.as_ref())).collect();
            while let Some((op, result)) = results.next().await {
                let key = op.object();
                match result {
                    Ok(Some(Written::Object(record))) => {
                        if let Op::Status(_, AssignedIdentityState::Assigned) = &op {
                            applied.add(&record);
                        }
                        changed.insert(key.clone(), Some(record.clone()));
                        self.overlay.record(key, Written::Object(record));
                    }
                    Ok(Some(Written::Deleted)) => {
                        if let Some(record) = existing.get(&key) {
                            removed.add(record);
                        }
                        changed.insert(key.clone(), None);
                        self.overlay.record(key, Written::Deleted);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(object = %key, %error, op = ?kind_of(&op), "write failed");
                        self.report_write_error(&op, existing.get(&key).copied(), &error);
                    }
                }
            }
        }
        self.report_bindings(applied, reason::BINDING_APPLIED, "applied", "on");
        self.report_bindings(removed, reason::BINDING_REMOVED, "removed", "from");
        if !changed.is_empty() {
            current.retain(|record| !changed.contains_key(record.object()));
            current.extend(changed.into_values().flatten());
        }
        current
    }

    /// One event per binding for the objects a batch of writes applied or removed. Upstream
    /// wrote one per pod: for a Deployment of 1,000 pods a third of MIC's API-server writes.
    /// (Upstream told of removals only when it dropped the objects of a deleted node; podid
    /// tells every time an assignment ends, so a binding's events show its whole history.)
    fn report_bindings(
        &mut self,
        pods: ByBinding,
        reason: &'static str,
        verb: &str,
        preposition: &str,
    ) {
        for (binding, pods) in pods.into_sorted() {
            let message = binding_message(&binding.name, verb, preposition, &pods);
            self.recorder
                .record(&binding, Severity::Normal, reason, message);
        }
    }

    fn report_write_error(
        &mut self,
        op: &Op,
        existing: Option<&AssignedRecord>,
        error: &kube::Error,
    ) {
        match op {
            Op::Create(assignment) => {
                let binding = involved_of(assignment.binding.as_ref());
                let message = format!(
                    "failed to apply binding {} for pod {}: {error}",
                    binding.name, assignment.pod.name
                );
                self.recorder.record(
                    &binding,
                    Severity::Warning,
                    reason::BINDING_APPLY_ERROR,
                    message,
                );
            }
            Op::Replace(object) => {
                if let Some(binding) = object.spec.azure_binding_ref.as_ref().map(involved_of) {
                    let message = format!(
                        "failed to apply binding {} for pod {}: {error}",
                        binding.name,
                        object.spec.pod.as_deref().unwrap_or_default()
                    );
                    self.recorder.record(
                        &binding,
                        Severity::Warning,
                        reason::BINDING_APPLY_ERROR,
                        message,
                    );
                }
            }
            Op::Status(..) | Op::Releasing(..) => {
                if let Some(object) = existing {
                    let message = format!("failed to update the status: {error}");
                    self.recorder.record(
                        &record_involved(object),
                        Severity::Warning,
                        reason::STATUS_UPDATE_ERROR,
                        message,
                    );
                }
            }
            Op::Delete(_) => {
                if let Some(binding) = existing.and_then(binding_of) {
                    let message = format!(
                        "failed to remove binding {} for pod {}: {error}",
                        binding.name,
                        existing.and_then(|o| o.pod.as_deref()).unwrap_or_default()
                    );
                    self.recorder.record(
                        &binding,
                        Severity::Warning,
                        reason::BINDING_REMOVE_ERROR,
                        message,
                    );
                }
            }
        }
    }

    /// An object waits for its identity on its machine: tell why when ARM refused it or
    /// failed.
    fn report_not_on_machine(&mut self, object: &AssignedRecord, nodes: &NodeIndex, now: Instant) {
        let Some(binding) = binding_of(object) else {
            return;
        };
        let view = object.view();
        let Some(id) = view.target.as_ref().and_then(|t| t.resource_id()) else {
            return;
        };
        let Some(machine) = view.node.as_deref().and_then(|n| nodes.machine(n)) else {
            return;
        };
        let message = if let Some(until) = self.machines.quarantined_until(id, now) {
            format!(
                "identity {id} could not be assigned to {machine} for pod {}: ARM refused it (it does not exist, or MIC's identity lacks the Managed Identity Operator role on it); fix the AzureIdentity's resourceID or grant the role; retrying in {}s",
                view.object.name,
                until.saturating_duration_since(now).as_secs()
            )
        } else if let Some(error) = self.machines.last_error(machine) {
            format!(
                "identity {id} is not yet on {machine} for pod {}: {error}",
                view.object.name
            )
        } else {
            return;
        };
        self.recorder.record(
            &binding,
            Severity::Warning,
            reason::BINDING_APPLY_ERROR,
            message,
        );
    }

    fn report_diagnostic(
        &mut self,
        diagnostic: &Diagnostic,
        identities: &[Arc<AzureIdentity>],
        bindings: &[Arc<AzureIdentityBinding>],
    ) {
        tracing::debug!(%diagnostic, "skipped");
        let (involved, reason) = match diagnostic {
            Diagnostic::Identity { identity, .. } => (
                identities
                    .iter()
                    .find(|i| ObjectRef::of(i.as_ref()) == *identity)
                    .map(|i| involved_of(i.as_ref())),
                reason::INVALID_IDENTITY,
            ),
            Diagnostic::Binding { binding, .. }
            | Diagnostic::DuplicateName {
                dropped: binding, ..
            } => (
                bindings
                    .iter()
                    .find(|b| ObjectRef::of(b.as_ref()) == *binding)
                    .map(|b| involved_of(b.as_ref())),
                reason::BINDING_APPLY_ERROR,
            ),
            Diagnostic::Node { node, .. } => (
                Some(Involved {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    namespace: None,
                    name: node.clone(),
                    uid: None,
                }),
                reason::INVALID_PROVIDER_ID,
            ),
            Diagnostic::Pod { pod, .. } => (
                Some(Involved {
                    api_version: "v1".into(),
                    kind: "Pod".into(),
                    namespace: Some(pod.namespace.clone()),
                    name: pod.name.clone(),
                    uid: None,
                }),
                reason::NO_IDENTITY,
            ),
        };
        if let Some(involved) = involved {
            self.recorder
                .record(&involved, Severity::Warning, reason, diagnostic.to_string());
        }
    }
}

fn report_refused(outcome: &Outcome) {
    for (id, error) in &outcome.refused {
        tracing::warn!(machine = %outcome.machine, identity = %id, %error, "identity quarantined");
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

fn kind_of(op: &Op) -> &'static str {
    match op {
        Op::Create(_) => "create",
        Op::Replace(_) => "replace",
        Op::Status(..) => "status",
        Op::Releasing(..) => "releasing",
        Op::Delete(_) => "delete",
    }
}

/// The event target for a Kubernetes object of ours.
fn involved_of<K: Resource<DynamicType = ()>>(object: &K) -> Involved {
    Involved {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        namespace: object.meta().namespace.clone(),
        name: object.meta().name.clone().unwrap_or_default(),
        uid: object.meta().uid.clone(),
    }
}

/// An AzureAssignedIdentity, as an event target.
fn record_involved(record: &AssignedRecord) -> Involved {
    Involved {
        api_version: AzureAssignedIdentity::api_version(&()).into_owned(),
        kind: AzureAssignedIdentity::kind(&()).into_owned(),
        namespace: Some(record.object().namespace.clone()),
        name: record.object().name.clone(),
        uid: record.uid.clone(),
    }
}

/// The binding embedded in an AzureAssignedIdentity, as an event target.
fn binding_of(record: &AssignedRecord) -> Option<Involved> {
    record.binding.as_deref().map(involved_of)
}

/// Where a write goes for `--createDeleteBatch`: the VM or scale set of the object's node, or
/// the node when it has none.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Group<'a> {
    Machine(&'a MachineId),
    Node(String),
}

/// `(AzureAssignedIdentity, node)` per embedded binding, for one event per binding.
#[derive(Default)]
struct ByBinding {
    pods: HashMap<Involved, Vec<(String, String)>>,
}

impl ByBinding {
    fn add(&mut self, record: &AssignedRecord) {
        if let Some(binding) = binding_of(record) {
            self.pods.entry(binding).or_default().push((
                record.object().name.clone(),
                record.view().node.clone().unwrap_or_default(),
            ));
        }
    }

    /// By binding namespace and name, each binding's pods by name.
    fn into_sorted(self) -> Vec<(Involved, Vec<(String, String)>)> {
        let mut bindings: Vec<_> = self.pods.into_iter().collect();
        bindings.sort_by(|a, b| (&a.0.namespace, &a.0.name).cmp(&(&b.0.namespace, &b.0.name)));
        for (_, pods) in &mut bindings {
            pods.sort();
        }
        bindings
    }
}

/// Pods named in one aggregated event; the rest are counted.
const PODS_NAMED: usize = 10;

/// Upstream's message for one pod (`Binding b applied on node n for pod p`), and for several
/// `Binding b applied for 12 pods: p1 on node n1, …, and 2 more`.
fn binding_message(
    binding: &str,
    verb: &str,
    preposition: &str,
    pods: &[(String, String)],
) -> String {
    if let [(pod, node)] = pods {
        return format!("Binding {binding} {verb} {preposition} node {node} for pod {pod}");
    }
    let mut message = format!("Binding {binding} {verb} for {} pods: ", pods.len());
    let named: Vec<String> = pods
        .iter()
        .take(PODS_NAMED)
        .map(|(pod, node)| format!("{pod} {preposition} node {node}"))
        .collect();
    message.push_str(&named.join(", "));
    if pods.len() > PODS_NAMED {
        message.push_str(&format!(", and {} more", pods.len() - PODS_NAMED));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(n: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("p{i}-default-id"), format!("node-{}", i % 2)))
            .collect()
    }

    #[test]
    fn one_pod_gets_upstreams_message() {
        assert_eq!(
            binding_message("b", "applied", "on", &pods(1)),
            "Binding b applied on node node-0 for pod p0-default-id"
        );
        assert_eq!(
            binding_message("b", "removed", "from", &pods(1)),
            "Binding b removed from node node-0 for pod p0-default-id"
        );
    }

    #[test]
    fn several_pods_share_one_message() {
        assert_eq!(
            binding_message("b", "applied", "on", &pods(2)),
            "Binding b applied for 2 pods: p0-default-id on node node-0, p1-default-id on node node-1"
        );
        let many = binding_message("b", "removed", "from", &pods(13));
        assert!(
            many.starts_with("Binding b removed for 13 pods: p0-default-id from node node-0, ")
        );
        assert!(many.ends_with("p9-default-id from node node-1, and 3 more"));
    }
}
