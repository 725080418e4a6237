//! podid's install artefacts against the real API server: every manifest of deploy/infra and the
//! Helm chart rendered with several value sets apply with server-side apply, and again without
//! changing anything. Helm is run from the cache (`scripts/helm build`); without it the test
//! fails and says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use podid_testkit::{TestEnv, apply_yaml, parse_documents, unique_name};
use serde_json::Value;
use tokio::sync::Mutex;

/// The manifests and the chart install cluster-scoped objects and ones in fixed namespaces
/// (`kube-system/aks-addon-exception`) under the same names: one installation at a time, or
/// one test's apply shows up as a change in the other's second apply.
static INSTALLING: Mutex<()> = Mutex::const_new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const MANIFESTS: &[&str] = &[
    "deploy/infra/deployment-rbac.yaml",
    "deploy/infra/deployment.yaml",
    "deploy/infra/noazurejson/deployment-rbac.yaml",
    "deploy/infra/noazurejson/deployment.yaml",
    "deploy/infra/managed-mode-deployment.yaml",
    "deploy/infra/mic-exception.yaml",
];

const VALUE_FILES: &[&str] = &[
    "default-values.yaml",
    "managed-values.yaml",
    "force-namespaced-values.yaml",
    "no-secrets-values.yaml",
    "upstream-values.yaml",
];

fn key(o: &DynamicObject) -> String {
    let kind = o.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
    format!(
        "{kind}/{}/{}",
        o.namespace().unwrap_or_default(),
        o.name_any()
    )
}

fn versions(objects: &[DynamicObject]) -> BTreeMap<String, String> {
    objects
        .iter()
        .map(|o| (key(o), o.resource_version().unwrap_or_default()))
        .collect()
}

/// Applies `yaml` twice; the second apply must change nothing. Returns the objects applied.
async fn apply_twice(env: &TestEnv, namespace: &str, what: &str, yaml: &str) -> Vec<DynamicObject> {
    let first = apply_yaml(&env.admin(), namespace, yaml)
        .await
        .unwrap_or_else(|e| panic!("{what} does not apply: {e}"));
    assert!(!first.is_empty(), "{what} holds no object");
    let second = apply_yaml(&env.admin(), namespace, yaml)
        .await
        .unwrap_or_else(|e| panic!("{what} does not apply a second time: {e}"));
    assert_eq!(
        versions(&first),
        versions(&second),
        "{what}: applying it again changed objects"
    );
    second
}

/// Uninstalls a variant, as switching variants needs: they share object names but not the
/// (immutable) MIC selector, as upstream's did. CRDs and warning policies stay: every test of
/// this process uses them.
async fn uninstall(env: &TestEnv, what: &str, objects: &[DynamicObject]) {
    for object in objects {
        let types = object
            .types
            .clone()
            .expect("applied objects carry their kind");
        if types.kind == "CustomResourceDefinition" || types.kind.starts_with("ValidatingAdmission")
        {
            continue;
        }
        let gvk = GroupVersionKind::try_from(&types).expect("a served kind");
        let (resource, capabilities) = discovery::pinned_kind(&env.admin(), &gvk)
            .await
            .unwrap_or_else(|e| panic!("{what}: {}: {e}", key(object)));
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => Api::namespaced_with(
                env.admin(),
                &object
                    .namespace()
                    .expect("a namespaced object has its namespace"),
                &resource,
            ),
            Scope::Cluster => Api::all_with(env.admin(), &resource),
        };
        api.delete(&object.name_any(), &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("{what}: cannot delete {}: {e}", key(object)));
    }
}

/// The documents of `yaml` by kind/namespace/name, as JSON.
fn documents(yaml: &str) -> BTreeMap<String, Value> {
    parse_documents(yaml)
        .expect("parses")
        .iter()
        .map(|o| (key(o), serde_json::to_value(o).expect("serializes")))
        .collect()
}

fn crd_documents() -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("deploy/crds")).expect("deploy/crds") {
        let path = entry.expect("entry").path();
        all.extend(documents(&std::fs::read_to_string(&path).expect("reads")));
    }
    all
}

/// Every ClusterRole and Role: no wildcard, and only real verbs (upstream had `post`).
fn assert_least_privilege(what: &str, docs: &BTreeMap<String, Value>) {
    const VERBS: &[&str] = &[
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
    ];
    for (name, doc) in docs
        .iter()
        .filter(|(k, _)| k.starts_with("ClusterRole/") || k.starts_with("Role/"))
    {
        for rule in doc["rules"].as_array().expect("rules") {
            for field in ["apiGroups", "resources", "verbs"] {
                for item in rule[field].as_array().expect(field) {
                    let item = item.as_str().expect("a string");
                    assert_ne!(item, "*", "{what}: {name} has a wildcard in {field}");
                    if field == "verbs" {
                        assert!(VERBS.contains(&item), "{what}: {name} has verb {item:?}");
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn the_kubectl_manifests_apply_and_reapply_unchanged() {
    let _one_at_a_time = INSTALLING.lock().await;
    let env = TestEnv::get().await;
    let crds = crd_documents();
    let mut mic_rules = Vec::new();
    // One test, in order: the files share object names, as upstream's did, so each variant is
    // uninstalled before the next. mic-exception.yaml goes on top of the last one.
    let mut previous: Vec<DynamicObject> = Vec::new();
    for path in MANIFESTS {
        let yaml = read(path);
        let docs = documents(&yaml);
        for (name, doc) in docs.iter().filter(|(k, _)| {
            k.starts_with("CustomResourceDefinition/") || k.starts_with("ValidatingAdmissionPolicy")
        }) {
            assert_eq!(
                Some(doc),
                crds.get(name),
                "{path}: {name} differs from deploy/crds/; copy it from there"
            );
        }
        assert_least_privilege(path, &docs);
        if let Some(role) = docs.get("ClusterRole//aad-pod-id-mic-role") {
            mic_rules.push((path, role["rules"].clone()));
        }
        if *path != "deploy/infra/mic-exception.yaml" {
            uninstall(env, &format!("before {path}"), &previous).await;
        }
        previous = apply_twice(env, "default", path, &yaml).await;
    }
    let (first_path, first) = &mic_rules[0];
    for (path, rules) in &mic_rules {
        assert_eq!(
            rules, first,
            "MIC's rules differ between {path} and {first_path}"
        );
    }
}

fn helm() -> PathBuf {
    let output = Command::new(repo().join("scripts/helm"))
        .arg("path")
        .output()
        .expect("scripts/helm runs");
    assert!(
        output.status.success(),
        "helm is not built: run scripts/helm build ({})",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

fn run_helm(args: &[&str]) -> String {
    let output = Command::new(helm())
        .args(args)
        .current_dir(repo())
        .output()
        .expect("helm runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "helm {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn the_chart_lints_renders_and_applies_with_each_value_set() {
    let _one_at_a_time = INSTALLING.lock().await;
    let env = TestEnv::get().await;
    let crds = crd_documents();
    for file in VALUE_FILES {
        let values = format!("charts/podid/ci/{file}");
        let lint = run_helm(&["lint", "--strict", "charts/podid", "-f", &values]);
        assert!(lint.contains("0 chart(s) failed"), "{values}:\n{lint}");
        let namespace = env.namespace("helm").await;
        // A name of its own per release: the chart's ClusterRoles are named after it.
        let name = unique_name("podid");
        let rendered = run_helm(&[
            "template",
            "release",
            "charts/podid",
            "--include-crds",
            "-n",
            namespace.name(),
            "-f",
            &values,
            "--set",
            &format!("nameOverride={name}"),
        ]);
        let docs = documents(&rendered);
        for (key, doc) in docs.iter().filter(|(k, _)| {
            k.starts_with("CustomResourceDefinition/") || k.starts_with("ValidatingAdmissionPolicy")
        }) {
            assert_eq!(
                Some(doc),
                crds.get(key),
                "chart: {key} differs from deploy/crds/; copy it from there"
            );
        }
        assert_least_privilege(&values, &docs);
        let managed = file.starts_with("managed");
        assert_eq!(
            docs.keys().any(|k| k.starts_with("Deployment/")),
            !managed,
            "{values}: MIC is deployed in standard mode only"
        );
        if !managed {
            let shipped = documents(&read("deploy/infra/deployment-rbac.yaml"));
            assert_eq!(
                docs[&format!("ClusterRole//{name}-mic")]["rules"],
                shipped["ClusterRole//aad-pod-id-mic-role"]["rules"],
                "{values}: the chart's MIC rules differ from the manifests'"
            );
            let lock = docs
                .iter()
                .find(|(k, _)| {
                    k.starts_with("Role/") && k.ends_with(&format!("/{name}-mic-leader-election"))
                })
                .map(|(_, role)| &role["rules"]);
            assert_eq!(
                lock,
                Some(&shipped["Role/default/aad-pod-id-mic-leader-election"]["rules"]),
                "{values}: the chart's leader-election rules differ from the manifests'"
            );
        }
        let nmi_role = &docs[&format!("ClusterRole//{name}-nmi")];
        let reads_secrets = nmi_role["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| r["resources"] == serde_json::json!(["secrets"]));
        assert_eq!(reads_secrets, !file.starts_with("no-secrets"), "{values}");
        apply_twice(env, namespace.name(), &values, &rendered).await;
    }
}

#[test]
fn a_removed_feature_is_refused_with_the_fix() {
    let output = Command::new(helm())
        .args([
            "template",
            "r",
            "charts/podid",
            "--set",
            "rbac.pspEnabled=true",
        ])
        .current_dir(repo())
        .output()
        .expect("helm runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("set it to false"), "{stderr}");
}
