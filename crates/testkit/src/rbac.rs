//! The RBAC an install manifest ships for one ServiceAccount, applied into the test cluster, so
//! a component under test acts with exactly the permissions it is installed with: one source of
//! truth for the rules, and a test fails when they lack something the component calls.
//!
//! For the converse (no rule is unused), a copy can drop one verb on one resource
//! ([`ShippedRbac::without`]) and be bound to a fresh ServiceAccount, and the process's log
//! ([`capture_log`]) shows whether the component was refused exactly that.

use std::fmt;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::{Error, apply_yaml, parse_documents, try_wait_for};

const BINDINGS: [&str; 2] = ["ClusterRoleBinding", "RoleBinding"];

/// One verb on one resource that a role's rule grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// `ClusterRole/<name>` or `Role/<name>`.
    pub role: String,
    /// A Role's namespace; `None` for a ClusterRole.
    pub namespace: Option<String>,
    pub group: String,
    pub resource: String,
    pub verb: String,
}

impl Permission {
    /// Whether `log` shows the API server refusing this to ServiceAccount `namespace/name`.
    /// Its 403 message names the user, the verb and the resource:
    /// `User "system:serviceaccount:ns:sa" cannot watch resource "pods" in API group ""`.
    pub fn refused_in(&self, log: &str, namespace: &str, name: &str) -> bool {
        let user = format!("User \"system:serviceaccount:{namespace}:{name}\"");
        let refusal = format!(
            "cannot {} resource \"{}\" in API group \"{}\"",
            self.verb, self.resource, self.group
        );
        log.lines()
            .any(|line| line.contains(&user) && line.contains(&refusal))
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.group.is_empty() {
            String::new()
        } else {
            format!(".{}", self.group)
        };
        write!(f, "{} {}{group} ({})", self.verb, self.resource, self.role)
    }
}

/// The roles a manifest binds to one ServiceAccount, and those bindings, as written there.
#[derive(Debug, Clone)]
pub struct ShippedRbac {
    namespace: String,
    name: String,
    objects: Vec<Value>,
}

impl ShippedRbac {
    /// Reads from `manifest` every ClusterRoleBinding and RoleBinding naming ServiceAccount
    /// `service_account` as a subject, and the ClusterRoles and Roles they refer to, which must
    /// be in the manifest too.
    pub fn from_manifest(manifest: &str, service_account: &str) -> Result<Self, Error> {
        let documents: Vec<Value> = parse_documents(manifest)?
            .iter()
            .map(|o| serde_json::to_value(o).expect("a parsed object serializes"))
            .collect();
        let problem = |detail: String| Error::Rbac {
            service_account: service_account.to_owned(),
            detail,
        };
        let mut namespace = None;
        let mut objects = Vec::new();
        for binding in documents.iter().filter(|d| BINDINGS.contains(&kind(d))) {
            let Some(subject) = binding["subjects"].as_array().and_then(|subjects| {
                subjects.iter().find(|s| {
                    s["kind"] == "ServiceAccount" && s["name"].as_str() == Some(service_account)
                })
            }) else {
                continue;
            };
            let subject_namespace = subject["namespace"].as_str().unwrap_or_default();
            match namespace {
                None => namespace = Some(subject_namespace),
                Some(seen) if seen != subject_namespace => {
                    return Err(problem(format!(
                        "its bindings name it in namespaces {seen} and {subject_namespace}"
                    )));
                }
                Some(_) => {}
            }
            let role_kind = binding["roleRef"]["kind"].as_str().unwrap_or_default();
            let role_name = binding["roleRef"]["name"].as_str().unwrap_or_default();
            let role = documents
                .iter()
                .find(|d| {
                    kind(d) == role_kind
                        && d["metadata"]["name"] == role_name
                        // A RoleBinding may grant a ClusterRole; a Role is its binding's namespace's.
                        && (role_kind != "Role"
                            || d["metadata"]["namespace"] == binding["metadata"]["namespace"])
                })
                .ok_or_else(|| {
                    problem(format!(
                        "{} {} refers to {role_kind} {role_name}, which the manifest lacks",
                        kind(binding),
                        binding["metadata"]["name"]
                    ))
                })?;
            objects.extend([role.clone(), binding.clone()]);
        }
        let namespace = namespace
            .ok_or_else(|| problem("no binding in the manifest names it".to_owned()))?
            .to_owned();
        Ok(Self {
            namespace,
            name: service_account.to_owned(),
            objects,
        })
    }

    /// The namespace the manifest's bindings put the ServiceAccount in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The ServiceAccount's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same RBAC with `suffix` appended to every role and binding name, so that two
    /// manifests' copies of one role (NMI's standard and managed ones) can be bound side by side.
    pub fn with_suffix(mut self, suffix: &str) -> Self {
        for object in &mut self.objects {
            append(&mut object["metadata"]["name"], suffix);
            if BINDINGS.contains(&kind(object)) {
                append(&mut object["roleRef"]["name"], suffix);
            }
        }
        self
    }

    /// Every (resource, verb) pair the roles grant, rule by rule in manifest order.
    pub fn permissions(&self) -> Vec<Permission> {
        let mut permissions = Vec::new();
        for role in self.roles() {
            for rule in role["rules"].as_array().into_iter().flatten() {
                for (group, resource, verb) in pairs(rule) {
                    permissions.push(Permission {
                        role: role_name(role),
                        namespace: role["metadata"]["namespace"].as_str().map(str::to_owned),
                        group,
                        resource,
                        verb,
                    });
                }
            }
        }
        permissions
    }

    /// The same RBAC without `permission`: the rule granting it is split per group and
    /// resource, and the verb dropped from that resource's copy (a copy left without verbs
    /// goes). Every other grant stays as it was.
    pub fn without(mut self, permission: &Permission) -> Self {
        for role in self
            .objects
            .iter_mut()
            .filter(|o| matches!(kind(o), "ClusterRole" | "Role"))
        {
            if role_name(role) != permission.role {
                continue;
            }
            let dropped = |group: &str, resource: &str, verb: &str| {
                (group, resource, verb)
                    == (
                        permission.group.as_str(),
                        permission.resource.as_str(),
                        permission.verb.as_str(),
                    )
            };
            let mut kept = Vec::new();
            for rule in role["rules"].as_array().cloned().unwrap_or_default() {
                if !pairs(&rule).any(|(g, r, v)| dropped(&g, &r, &v)) {
                    kept.push(rule);
                    continue;
                }
                for group in strings(&rule["apiGroups"]) {
                    for resource in strings(&rule["resources"]) {
                        let verbs: Vec<&str> = strings(&rule["verbs"])
                            .filter(|verb| !dropped(group, resource, verb))
                            .collect();
                        if !verbs.is_empty() {
                            let mut split = rule.clone();
                            split["apiGroups"] = json!([group]);
                            split["resources"] = json!([resource]);
                            split["verbs"] = json!(verbs);
                            kept.push(split);
                        }
                    }
                }
            }
            role["rules"] = Value::from(kept);
        }
        self
    }

    /// The same RBAC bound to ServiceAccount `name` (same namespace) instead: with
    /// [`ShippedRbac::with_suffix`], a copy that cannot touch the shipped one's grants.
    pub fn for_service_account(mut self, name: &str) -> Self {
        for binding in self
            .objects
            .iter_mut()
            .filter(|o| BINDINGS.contains(&kind(o)))
        {
            for subject in binding["subjects"].as_array_mut().into_iter().flatten() {
                if subject["kind"] == "ServiceAccount"
                    && subject["name"].as_str() == Some(&self.name)
                    && subject["namespace"].as_str() == Some(&self.namespace)
                {
                    subject["name"] = Value::from(name);
                }
            }
        }
        self.name = name.to_owned();
        self
    }

    /// Whether the API server's authorizer lets the ServiceAccount do `permission`'s verb on
    /// its resource, in `namespace` (`None`: cluster-wide).
    pub async fn allows(
        &self,
        client: &Client,
        permission: &Permission,
        namespace: Option<&str>,
    ) -> Result<bool, Error> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(format!(
                    "system:serviceaccount:{}:{}",
                    self.namespace, self.name
                )),
                // The groups the API server gives every ServiceAccount.
                groups: Some(vec![
                    "system:serviceaccounts".to_owned(),
                    format!("system:serviceaccounts:{}", self.namespace),
                    "system:authenticated".to_owned(),
                ]),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(permission.group.clone()),
                    resource: Some(permission.resource.clone()),
                    verb: Some(permission.verb.clone()),
                    namespace: namespace.map(str::to_owned),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = Api::<SubjectAccessReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        Ok(answer.status.is_some_and(|status| status.allowed))
    }

    /// Waits until the authorizer grants every permission of these roles (a Role's in its own
    /// namespace and in each of `also_in`, as [`ShippedRbac::apply`] copies it): RBAC takes
    /// effect through the API server's caches, so a component started at once could be
    /// refused what its roles already grant.
    pub async fn wait_granted(
        &self,
        client: &Client,
        also_in: &[&str],
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut checks = Vec::new();
        for permission in self.permissions() {
            match &permission.namespace {
                None => checks.push((permission, None)),
                Some(own) => {
                    for namespace in std::iter::once(own.as_str()).chain(also_in.iter().copied()) {
                        checks.push((permission.clone(), Some(namespace.to_owned())));
                    }
                }
            }
        }
        try_wait_for(
            &format!(
                "the roles of {}/{} to take effect",
                self.namespace, self.name
            ),
            timeout,
            || async {
                for (permission, namespace) in &checks {
                    if !self
                        .allows(client, permission, namespace.as_deref())
                        .await?
                    {
                        return Err(Error::Rbac {
                            service_account: self.name.clone(),
                            detail: format!("{permission} not granted yet"),
                        });
                    }
                }
                Ok(())
            },
        )
        .await
    }

    fn roles(&self) -> impl Iterator<Item = &Value> {
        self.objects
            .iter()
            .filter(|o| matches!(kind(o), "ClusterRole" | "Role"))
    }

    /// Applies the roles and bindings as shipped (server-side apply, so again is a no-op), and
    /// copies the namespaced Roles and their RoleBindings into each of `also_in`: the tests'
    /// own namespaces that stand for the one the manifest grants (a leader-election lock's).
    pub async fn apply(&self, client: &Client, also_in: &[&str]) -> Result<(), Error> {
        let mut documents = self.objects.clone();
        for namespace in also_in {
            for object in self
                .objects
                .iter()
                .filter(|o| matches!(kind(o), "Role" | "RoleBinding"))
            {
                let mut copy = object.clone();
                copy["metadata"]["namespace"] = Value::from(*namespace);
                documents.push(copy);
            }
        }
        // JSON documents are YAML documents.
        let yaml = documents
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n---\n");
        apply_yaml(client, &self.namespace, &yaml).await.map(drop)
    }
}

/// How a component's short scenario ended with a given role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The scenario ran to its end.
    Succeeded,
    /// The component was refused the permission dropped from its role.
    Refused,
}

/// Proves that `shipped` grants nothing unused. `run(None)` plays the component's scenario
/// with the shipped role(s) and must succeed with no refusal of its ServiceAccount (whose name
/// it returns) in `log`; then `run(Some(p))`, for every permission `p` in turn, plays it with
/// just `p` dropped and must end [`Outcome::Refused`]. `what` names the component in messages.
pub async fn assert_every_permission_needed<F, Fut>(
    what: &str,
    shipped: &ShippedRbac,
    log: CapturedLog,
    mut run: F,
) where
    F: FnMut(Option<Permission>) -> Fut,
    Fut: std::future::Future<Output = (String, Outcome)>,
{
    let started = std::time::Instant::now();
    let (service_account, outcome) = run(None).await;
    eprintln!(
        "{what}, shipped roles: {outcome:?} in {:?}",
        started.elapsed()
    );
    assert_eq!(outcome, Outcome::Succeeded, "{what} with the shipped roles");
    let user = format!(
        "User \"system:serviceaccount:{}:{service_account}\"",
        shipped.namespace()
    );
    assert!(
        !log.text().contains(&user),
        "{what} was refused something with the shipped roles:\n{}",
        log.text()
    );
    let mut unused = Vec::new();
    for permission in shipped.permissions() {
        let started = std::time::Instant::now();
        let name = permission.to_string();
        let (_, outcome) = run(Some(permission)).await;
        eprintln!(
            "{what}, without {name}: {outcome:?} in {:?}",
            started.elapsed()
        );
        if outcome != Outcome::Refused {
            unused.push(name);
        }
    }
    assert!(
        unused.is_empty(),
        "{what} did its scenario without being refused these: {unused:#?}"
    );
}

/// Everything this process logs through `tracing` from the first call on, which installs the
/// global subscriber with `filter` (later calls' filters are ignored). A component the API
/// server refuses logs the 403, whose message names the user, verb and resource
/// ([`Permission::refused_in`]).
pub fn capture_log(filter: &str) -> CapturedLog {
    static LOG: OnceLock<()> = OnceLock::new();
    LOG.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(|| CapturedLog)
            .init();
    });
    CapturedLog
}

/// The captured log ([`capture_log`]).
#[derive(Debug, Clone, Copy)]
pub struct CapturedLog;

static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

impl CapturedLog {
    /// The text logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&CAPTURED.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `ClusterRole/<name>` or `Role/<name>`.
fn role_name(role: &Value) -> String {
    format!(
        "{}/{}",
        kind(role),
        role["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// A rule's (group, resource, verb) triples.
fn pairs(rule: &Value) -> impl Iterator<Item = (String, String, String)> + '_ {
    strings(&rule["apiGroups"]).flat_map(move |group| {
        strings(&rule["resources"]).flat_map(move |resource| {
            strings(&rule["verbs"])
                .map(move |verb| (group.to_owned(), resource.to_owned(), verb.to_owned()))
        })
    })
}

fn strings(list: &Value) -> impl Iterator<Item = &str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn kind(document: &Value) -> &str {
    document["kind"].as_str().unwrap_or_default()
}

fn append(name: &mut Value, suffix: &str) {
    *name = Value::from(format!("{}{suffix}", name.as_str().unwrap_or_default()));
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: { name: sa, namespace: home }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: wide }
rules: [{ apiGroups: [""], resources: [pods], verbs: [list] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: wide }
subjects: [{ kind: ServiceAccount, name: sa, namespace: home }]
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: wide }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: lock, namespace: home }
rules: [{ apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: lock, namespace: home }
subjects: [{ kind: ServiceAccount, name: sa, namespace: home }]
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: lock }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: other }
subjects: [{ kind: ServiceAccount, name: someone-else, namespace: home }]
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: missing }
"#;

    fn names(rbac: &ShippedRbac) -> Vec<String> {
        rbac.objects
            .iter()
            .map(|o| format!("{}/{}", kind(o), o["metadata"]["name"].as_str().unwrap()))
            .collect()
    }

    #[test]
    fn takes_the_roles_bound_to_the_service_account_and_nothing_else() {
        let rbac = ShippedRbac::from_manifest(MANIFEST, "sa").unwrap();
        assert_eq!((rbac.namespace(), rbac.name()), ("home", "sa"));
        assert_eq!(
            names(&rbac),
            [
                "ClusterRole/wide",
                "ClusterRoleBinding/wide",
                "Role/lock",
                "RoleBinding/lock"
            ]
        );
        let renamed = rbac.with_suffix("-x");
        assert_eq!(renamed.objects[1]["roleRef"]["name"], "wide-x");
        assert_eq!(renamed.objects[2]["metadata"]["name"], "lock-x");
    }

    fn rules(rbac: &ShippedRbac, role: usize) -> Value {
        rbac.roles().nth(role).unwrap()["rules"].clone()
    }

    #[test]
    fn permissions_are_each_verb_on_each_resource_of_each_role() {
        let rbac = ShippedRbac::from_manifest(MANIFEST, "sa").unwrap();
        let shown: Vec<String> = rbac.permissions().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            shown,
            [
                "list pods (ClusterRole/wide)",
                "get leases.coordination.k8s.io (Role/lock)"
            ]
        );
        assert_eq!(rbac.permissions()[1].namespace.as_deref(), Some("home"));
    }

    #[test]
    fn without_drops_one_verb_on_one_resource_and_keeps_every_other_grant() {
        let manifest = MANIFEST.replace(
            "rules: [{ apiGroups: [\"\"], resources: [pods], verbs: [list] }]",
            "rules: [{ apiGroups: [\"\"], resources: [pods, nodes], verbs: [list, watch] }, \
             { apiGroups: [\"\"], resources: [events], verbs: [create] }]",
        );
        let rbac = ShippedRbac::from_manifest(&manifest, "sa").unwrap();
        let all = rbac.permissions();
        assert_eq!(all.len(), 6);
        let watch_pods = all
            .iter()
            .find(|p| p.to_string() == "watch pods (ClusterRole/wide)");
        let less = rbac.clone().without(watch_pods.unwrap());
        assert_eq!(
            rules(&less, 0),
            json!([
                { "apiGroups": [""], "resources": ["pods"], "verbs": ["list"] },
                { "apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"] },
                { "apiGroups": [""], "resources": ["events"], "verbs": ["create"] },
            ])
        );
        assert_eq!(rules(&less, 1), rules(&rbac, 1));
        let rest: Vec<&Permission> = all.iter().filter(|p| Some(*p) != watch_pods).collect();
        assert_eq!(less.permissions().iter().collect::<Vec<_>>(), rest);
        // A rule left without verbs goes; the same verb in another role stays.
        let create_events = &all[4];
        assert_eq!(
            create_events.to_string(),
            "create events (ClusterRole/wide)"
        );
        assert_eq!(
            rules(&rbac.clone().without(create_events), 0)
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let get_leases = &all[5];
        assert_eq!(rules(&rbac.without(get_leases), 1), json!([]));
    }

    #[test]
    fn a_copy_for_another_service_account_binds_only_it() {
        let rbac = ShippedRbac::from_manifest(MANIFEST, "sa")
            .unwrap()
            .for_service_account("sa-copy")
            .with_suffix("-copy");
        assert_eq!((rbac.namespace(), rbac.name()), ("home", "sa-copy"));
        for binding in [&rbac.objects[1], &rbac.objects[3]] {
            assert_eq!(
                binding["subjects"],
                json!([{ "kind": "ServiceAccount", "name": "sa-copy", "namespace": "home" }])
            );
        }
        let refusal = "pods is forbidden: User \"system:serviceaccount:home:sa-copy\" cannot list \
                       resource \"pods\" in API group \"\" at the cluster scope";
        let list_pods = &rbac.permissions()[0];
        assert!(list_pods.refused_in(refusal, "home", "sa-copy"));
        assert!(!list_pods.refused_in(refusal, "home", "sa"));
        assert!(!rbac.permissions()[1].refused_in(refusal, "home", "sa-copy"));
    }

    #[test]
    fn a_binding_to_a_role_the_manifest_lacks_is_an_error() {
        let err = ShippedRbac::from_manifest(MANIFEST, "someone-else").unwrap_err();
        assert!(err.to_string().contains("ClusterRole missing"), "{err}");
    }

    #[test]
    fn an_unbound_service_account_is_an_error() {
        let err = ShippedRbac::from_manifest(MANIFEST, "nobody").unwrap_err();
        assert!(err.to_string().contains("no binding"), "{err}");
    }
}
