//! What podid's CRDs and warning policies accept, warn about and refuse (docs/crds.md), against
//! a real API server. Every object is created as `kubectl apply` creates a new one: with strict
//! field validation, so an undeclared key would be an error rather than silently pruned.

use kube::api::{ApiResource, PostParams};
use kube::core::{DynamicObject, Status};
use podid_api::{AzureIdentity, AzureIdentityBinding, AzurePodIdentityException};
use podid_testkit::{TestEnv, Written, create_strict};
use serde_json::{Value, json};

const RESOURCE_ID: &str = "/subscriptions/6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c/resourcegroups/Study4Dev-JE-AKS-Study4Dev-JE-AKSResource/providers/Microsoft.ManagedIdentity/userAssignedIdentities/DEMO";
const CLIENT_ID: &str = "cb5569f2-8d09-4de1-a007-e02058e11d15";
const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const AUX_1: &str = "11111111-1111-1111-1111-111111111111";
const AUX_2: &str = "22222222-2222-2222-2222-222222222222";
const AUX_3: &str = "33333333-3333-3333-3333-333333333333";
const AUX_4: &str = "44444444-4444-4444-4444-444444444444";

#[derive(Clone, Copy, Debug)]
enum Kind {
    Identity,
    Binding,
    Exception,
}

impl Kind {
    fn resource(self) -> ApiResource {
        match self {
            Kind::Identity => ApiResource::erase::<AzureIdentity>(&()),
            Kind::Binding => ApiResource::erase::<AzureIdentityBinding>(&()),
            Kind::Exception => ApiResource::erase::<AzurePodIdentityException>(&()),
        }
    }
}

/// One object to create: its kind, annotations and body below `metadata` (spec, status).
struct Case {
    name: &'static str,
    kind: Kind,
    annotations: Value,
    body: Value,
}

fn case(name: &'static str, kind: Kind, spec: Value) -> Case {
    Case {
        name,
        kind,
        annotations: json!({}),
        body: json!({ "spec": spec }),
    }
}

impl Case {
    fn annotated(mut self, annotations: Value) -> Self {
        self.annotations = annotations;
        self
    }

    fn with_status(mut self, status: Value) -> Self {
        self.body["status"] = status;
        self
    }

    fn object(&self) -> DynamicObject {
        let resource = self.kind.resource();
        let mut object = json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": {"name": self.name, "annotations": self.annotations},
        });
        for (key, value) in self.body.as_object().unwrap() {
            object[key] = value.clone();
        }
        serde_json::from_value(object).unwrap()
    }

    /// Creates the object; `Err` carries the API server's refusal, or any other failure as a
    /// status with code 0.
    async fn create(&self, client: &kube::Client, namespace: &str) -> Result<Written, Status> {
        create_strict(
            client,
            &self.kind.resource(),
            namespace,
            &PostParams::default(),
            &self.object(),
        )
        .await
        .map_err(|e| match e {
            podid_testkit::Error::Kube(kube::Error::Api(status)) => *status,
            other => Status::failure(&other.to_string(), "NotAnApiRefusal"),
        })
    }

    /// Differences between what was sent and what the server stored.
    fn stored_differences(&self, written: &Written) -> Vec<String> {
        let mut differences = Vec::new();
        for (part, sent) in self.body.as_object().unwrap() {
            if &written.object.data[part] != sent {
                differences.push(format!(
                    "{}: sent {part} {sent}, stored {}",
                    self.name, written.object.data[part]
                ));
            }
        }
        let stored_annotations = serde_json::to_value(
            written
                .object
                .metadata
                .annotations
                .clone()
                .unwrap_or_default(),
        )
        .unwrap();
        if stored_annotations != self.annotations {
            differences.push(format!("{}: annotations {stored_annotations}", self.name));
        }
        differences
    }
}

/// The warning texts from podid's policies, with the API server's prefix removed.
fn podid_warnings(written: &Written) -> Result<Vec<String>, String> {
    written
        .warnings
        .iter()
        .map(|warning| {
            let (prefix, message) = warning
                .split_once("': ")
                .ok_or_else(|| format!("not a policy warning: {warning}"))?;
            if prefix.starts_with("Validation failed for ValidatingAdmissionPolicy 'podid-") {
                Ok(message.to_owned())
            } else {
                Err(format!("not from a podid policy: {warning}"))
            }
        })
        .collect()
}

#[tokio::test]
async fn upstream_forms_apply_unchanged_without_warnings() {
    let env = TestEnv::get().await;
    let ns = env.namespace("accepted").await;
    let client = env.admin();
    let resource_groups_camel = RESOURCE_ID.replace("/resourcegroups/", "/resourceGroups/");
    let cases = vec![
        // Standard mode, as upstream's docs and the seed story write them.
        case(
            "type-0",
            Kind::Identity,
            json!({"type": 0, "resourceID": RESOURCE_ID, "clientID": CLIENT_ID}),
        ),
        case(
            "type-0-resource-groups-camel",
            Kind::Identity,
            json!({"type": 0, "resourceID": resource_groups_camel, "clientID": CLIENT_ID}),
        ),
        case(
            "type-0-upper-case-id",
            Kind::Identity,
            json!({"type": 0, "resourceID": RESOURCE_ID.to_uppercase(), "clientID": CLIENT_ID}),
        ),
        case(
            "type-omitted",
            Kind::Identity,
            json!({"resourceID": RESOURCE_ID, "clientID": CLIENT_ID}),
        ),
        case(
            "namespaced",
            Kind::Identity,
            json!({"type": 0, "resourceID": RESOURCE_ID, "clientID": CLIENT_ID}),
        )
        .annotated(json!({"aadpodidentity.k8s.io/Behavior": "namespaced"})),
        case(
            "type-1-aux-tenants",
            Kind::Identity,
            json!({"type": 1, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "auxiliaryTenantIDs": [AUX_1, AUX_2, AUX_3], "clientPassword": {"name": "sp-secret", "namespace": "default"}, "adEndpoint": "https://login.microsoftonline.com/"}),
        ),
        // Upstream's Helm chart renders an empty `auxiliaryTenantIDs:` as null.
        case(
            "type-1-helm-null-aux",
            Kind::Identity,
            json!({"type": 1, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": {"name": "sp-secret", "namespace": "default"}, "auxiliaryTenantIDs": null}),
        ),
        case(
            "type-1-empty-aux",
            Kind::Identity,
            json!({"type": 1, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": {"name": "sp-secret", "namespace": "default"}, "auxiliaryTenantIDs": []}),
        ),
        case(
            "type-2",
            Kind::Identity,
            json!({"type": 2, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": {"name": "sp-cert", "namespace": "default"}}),
        ),
        case(
            "type-2-helm-null-aux",
            Kind::Identity,
            json!({"type": 2, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": {"name": "sp-cert", "namespace": "default"}, "auxiliaryTenantIDs": null}),
        ),
        case(
            "binding",
            Kind::Binding,
            json!({"azureIdentity": "demo", "selector": "DEMO"}),
        ),
        case(
            "exception",
            Kind::Exception,
            json!({"podLabels": {"app": "mic", "component": "mic"}}),
        ),
        // Managed mode: the identity and binding in the pods' namespace, no controller.
        case(
            "managed-type-0",
            Kind::Identity,
            json!({"type": 0, "resourceID": RESOURCE_ID, "clientID": CLIENT_ID}),
        ),
        case(
            "managed-binding",
            Kind::Binding,
            json!({"azureIdentity": "managed-type-0", "selector": "managed"}),
        ),
        case(
            "aks-addon-exception",
            Kind::Exception,
            json!({"podLabels": {"kubernetes.azure.com/managedby": "aks"}}),
        ),
        // Exported from an upstream cluster (`kubectl get -o yaml`): upstream's type upgrade
        // rewrote every object with the stray `metadata: {}` and an empty `clientPassword`.
        case(
            "exported-type-0",
            Kind::Identity,
            json!({"clientID": CLIENT_ID, "clientPassword": {}, "metadata": {}, "resourceID": RESOURCE_ID}),
        )
        .with_status(json!({"metadata": {}}))
        .annotated(json!({"aadpodidentity.k8s.io/Behavior": "namespaced"})),
        case(
            "exported-type-1",
            Kind::Identity,
            json!({"type": 1, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": {"name": "sp-secret", "namespace": "default"}, "metadata": {}}),
        )
        .with_status(json!({"metadata": {}, "availableReplicas": 1})),
        case(
            "exported-binding",
            Kind::Binding,
            json!({"azureIdentity": "demo", "metadata": {}, "selector": "DEMO"}),
        )
        .with_status(json!({"metadata": {}})),
        case(
            "exported-exception",
            Kind::Exception,
            json!({"metadata": {}, "podLabels": {"app": "mic"}}),
        )
        .with_status(json!({"metadata": {}})),
    ];
    let mut failures = Vec::new();
    for case in &cases {
        match case.create(&client, ns.name()).await {
            Ok(written) => {
                failures.extend(case.stored_differences(&written));
                if !written.warnings.is_empty() {
                    failures.push(format!("{}: warned {:?}", case.name, written.warnings));
                }
            }
            Err(e) => failures.push(format!("{}: refused: {e:?}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    let identities: kube::Api<AzureIdentity> = kube::Api::namespaced(client, ns.name());
    assert!(podid_api::is_namespaced(
        &identities.get("namespaced").await.unwrap()
    ));
    assert!(!podid_api::is_namespaced(
        &identities.get("type-1-aux-tenants").await.unwrap()
    ));
}

#[tokio::test]
async fn go_serialized_stray_metadata_is_stored_as_upstream_stored_it() {
    let env = TestEnv::get().await;
    let ns = env.namespace("go-metadata").await;
    let client = env.admin();
    // A Go client writes the empty ObjectMeta of upstream's types as `{creationTimestamp: null}`.
    let go_metadata = json!({"creationTimestamp": null});
    let cases = [
        case(
            "identity",
            Kind::Identity,
            json!({"type": 0, "resourceID": RESOURCE_ID, "clientID": CLIENT_ID, "metadata": go_metadata}),
        )
        .with_status(json!({"metadata": go_metadata})),
        case(
            "binding",
            Kind::Binding,
            json!({"azureIdentity": "identity", "selector": "DEMO", "metadata": go_metadata}),
        )
        .with_status(json!({"metadata": go_metadata})),
        case(
            "exception",
            Kind::Exception,
            json!({"podLabels": {"app": "mic"}, "metadata": go_metadata}),
        )
        .with_status(json!({"metadata": go_metadata})),
    ];
    for case in cases {
        let written = case
            .create(&client, ns.name())
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
        assert!(written.warnings.is_empty(), "{:?}", written.warnings);
        for part in ["spec", "status"] {
            assert_eq!(
                written.object.data[part]["metadata"],
                json!({}),
                "{} {part}",
                case.name
            );
        }
    }
}

#[tokio::test]
async fn inert_or_mode_dependent_forms_are_stored_and_warn() {
    let env = TestEnv::get().await;
    let ns = env.namespace("warned").await;
    let client = env.admin();
    let sp = |extra: Value| {
        let mut spec = json!({"type": 1, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": {"name": "s", "namespace": "default"}});
        for (key, value) in extra.as_object().unwrap() {
            spec[key] = value.clone();
        }
        spec
    };
    let cases: Vec<(Case, &[&str])> = vec![
        (
            case(
                "managed-mode-no-resource-id",
                Kind::Identity,
                json!({"type": 0, "clientID": CLIENT_ID}),
            ),
            &["spec.resourceID is empty: "],
        ),
        (
            case(
                "empty-resource-id",
                Kind::Identity,
                json!({"resourceID": "", "clientID": CLIENT_ID}),
            ),
            &["spec.resourceID is empty: "],
        ),
        (
            case(
                "no-client-id",
                Kind::Identity,
                json!({"type": 0, "resourceID": RESOURCE_ID}),
            ),
            &["spec.clientID is empty: "],
        ),
        (
            case("empty-spec", Kind::Identity, json!({})),
            &["spec.resourceID is empty: ", "spec.clientID is empty: "],
        ),
        (
            case(
                "type-0-with-secret",
                Kind::Identity,
                json!({"resourceID": RESOURCE_ID, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": {"name": "s", "namespace": "default"}}),
            ),
            &[
                "spec.tenantID is ignored: ",
                "spec.clientPassword is ignored: ",
            ],
        ),
        (
            case(
                "type-0-with-aux-and-endpoint",
                Kind::Identity,
                json!({"type": 0, "resourceID": RESOURCE_ID, "clientID": CLIENT_ID, "auxiliaryTenantIDs": [AUX_1], "adEndpoint": "https://login.microsoftonline.com/"}),
            ),
            &[
                "spec.auxiliaryTenantIDs is ignored: ",
                "spec.adEndpoint is ignored: ",
            ],
        ),
        (
            case(
                "type-2-aux",
                Kind::Identity,
                json!({"type": 2, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": {"name": "c", "namespace": "default"}, "auxiliaryTenantIDs": [AUX_1]}),
            ),
            &["spec.auxiliaryTenantIDs is ignored for a service principal with a certificate"],
        ),
        (
            case(
                "ad-resource-id",
                Kind::Identity,
                sp(json!({"adResourceID": "https://management.azure.com/"})),
            ),
            &["spec.adResourceID is ignored"],
        ),
        (
            case(
                "behavior-value-case",
                Kind::Identity,
                json!({"resourceID": RESOURCE_ID, "clientID": CLIENT_ID}),
            )
            .annotated(json!({"aadpodidentity.k8s.io/Behavior": "Namespaced"})),
            &["metadata.annotations: only aadpodidentity.k8s.io/Behavior: namespaced"],
        ),
        (
            case(
                "behavior-key-case",
                Kind::Identity,
                json!({"resourceID": RESOURCE_ID, "clientID": CLIENT_ID}),
            )
            .annotated(json!({"aadpodidentity.k8s.io/behavior": "namespaced"})),
            &["metadata.annotations: only aadpodidentity.k8s.io/Behavior: namespaced"],
        ),
        (
            case(
                "both-resource-id",
                Kind::Identity,
                json!({"type": 0, "ResourceID": RESOURCE_ID, "resourceID": RESOURCE_ID, "clientID": CLIENT_ID}),
            ),
            &["spec.ResourceID repeats spec.resourceID"],
        ),
        (
            case(
                "both-lowercase",
                Kind::Identity,
                json!({"resourceid": RESOURCE_ID, "resourceID": RESOURCE_ID, "clientid": CLIENT_ID, "clientID": CLIENT_ID}),
            ),
            &[
                "spec.resourceid repeats spec.resourceID",
                "spec.clientid repeats spec.clientID",
            ],
        ),
        (
            case(
                "both-secret",
                Kind::Identity,
                sp(
                    json!({"TenantID": TENANT_ID, "ClientPassword": {"name": "s", "namespace": "default"}}),
                ),
            ),
            &[
                "spec.TenantID repeats spec.tenantID",
                "spec.ClientPassword repeats spec.clientPassword",
            ],
        ),
        (
            case(
                "both-secret-keys",
                Kind::Identity,
                sp(
                    json!({"clientPassword": {"name": "s", "Name": "s", "namespace": "default", "Namespace": "default"}}),
                ),
            ),
            &[
                "spec.clientPassword.Name repeats spec.clientPassword.name",
                "spec.clientPassword.Namespace repeats spec.clientPassword.namespace",
            ],
        ),
        (
            case(
                "legacy-ad-keys",
                Kind::Identity,
                sp(
                    json!({"adresourceid": "https://management.azure.com/", "adendpoint": "https://login.microsoftonline.com/"}),
                ),
            ),
            &[
                "spec.adresourceid is the pre-1.6 spelling of spec.adResourceID and is ignored",
                "spec.adendpoint is the pre-1.6 spelling of spec.adEndpoint and is ignored",
            ],
        ),
        (
            case(
                "binding-both-spellings",
                Kind::Binding,
                json!({"AzureIdentity": "demo", "azureIdentity": "demo", "Selector": "DEMO", "selector": "DEMO"}),
            ),
            &[
                "spec.AzureIdentity repeats spec.azureIdentity",
                "spec.Selector repeats spec.selector",
            ],
        ),
        (
            case(
                "binding-empty-selector",
                Kind::Binding,
                json!({"azureIdentity": "demo", "selector": ""}),
            ),
            &["spec.selector is empty: "],
        ),
        (
            case(
                "binding-no-selector",
                Kind::Binding,
                json!({"azureIdentity": "demo"}),
            ),
            &["spec.selector is empty: "],
        ),
        (
            case(
                "binding-no-identity",
                Kind::Binding,
                json!({"azureIdentity": "", "selector": "DEMO"}),
            ),
            &["spec.azureIdentity is empty: "],
        ),
        (
            case(
                "binding-weight",
                Kind::Binding,
                json!({"azureIdentity": "demo", "selector": "DEMO", "weight": 5}),
            ),
            &["spec.weight is ignored: "],
        ),
        (
            case(
                "exception-both-spellings",
                Kind::Exception,
                json!({"PodLabels": {"app": "mic"}, "podLabels": {"app": "mic"}}),
            ),
            &["spec.PodLabels repeats spec.podLabels"],
        ),
        (
            case(
                "exception-no-labels",
                Kind::Exception,
                json!({"podLabels": {}}),
            ),
            &["spec.podLabels is empty: "],
        ),
        (
            case("exception-empty-spec", Kind::Exception, json!({})),
            &["spec.podLabels is empty: "],
        ),
    ];
    let mut failures = Vec::new();
    for (case, expected) in &cases {
        let written = match case.create(&client, ns.name()).await {
            Ok(written) => written,
            Err(e) => {
                failures.push(format!("{}: refused: {e:?}", case.name));
                continue;
            }
        };
        failures.extend(case.stored_differences(&written));
        let warnings = match podid_warnings(&written) {
            Ok(warnings) => warnings,
            Err(e) => {
                failures.push(format!("{}: {e}", case.name));
                continue;
            }
        };
        // Exactly the expected warnings: each one once, nothing else.
        let unmatched: Vec<&String> = warnings
            .iter()
            .filter(|w| expected.iter().filter(|e| w.starts_with(**e)).count() != 1)
            .collect();
        let missing: Vec<&&str> = expected
            .iter()
            .filter(|e| warnings.iter().filter(|w| w.starts_with(**e)).count() != 1)
            .collect();
        if !unmatched.is_empty() || !missing.is_empty() {
            failures.push(format!(
                "{}: missing {missing:?}, unexpected {unmatched:?}",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn what_never_worked_is_refused_naming_the_key() {
    let env = TestEnv::get().await;
    let ns = env.namespace("refused").await;
    let client = env.admin();
    let no_resource_groups = "/subscriptions/6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c/providers/Microsoft.ManagedIdentity/userAssignedIdentities/DEMO";
    let too_long = format!("{RESOURCE_ID}{}", "x".repeat(1024));
    let secret = json!({"name": "s", "namespace": "default"});
    let cases: Vec<(Case, &[&str])> = vec![
        (
            case(
                "type-3",
                Kind::Identity,
                json!({"type": 3, "clientID": CLIENT_ID, "resourceID": RESOURCE_ID}),
            ),
            &["spec.type must be 0"],
        ),
        (
            case(
                "type-string",
                Kind::Identity,
                json!({"type": "0", "clientID": CLIENT_ID, "resourceID": RESOURCE_ID}),
            ),
            &["spec.type"],
        ),
        (
            case(
                "vm-resource-id",
                Kind::Identity,
                json!({"type": 0, "clientID": CLIENT_ID, "resourceID": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"}),
            ),
            &["spec.resourceID must be the ARM ID of a user-assigned managed identity"],
        ),
        // Upstream's own Gatekeeper example (e2e "invalid-identity"): no resourcegroups segment.
        (
            case(
                "gatekeeper-invalid-identity",
                Kind::Identity,
                json!({"type": 0, "clientID": CLIENT_ID, "resourceID": no_resource_groups}),
            ),
            &["spec.resourceID must be the ARM ID of a user-assigned managed identity"],
        ),
        (
            case(
                "type-omitted-client-id-as-resource-id",
                Kind::Identity,
                json!({"clientID": CLIENT_ID, "resourceID": CLIENT_ID}),
            ),
            &["spec.resourceID must be the ARM ID of a user-assigned managed identity"],
        ),
        (
            case(
                "resource-id-too-long",
                Kind::Identity,
                json!({"clientID": CLIENT_ID, "resourceID": too_long}),
            ),
            &["spec.resourceID: Too long"],
        ),
        (
            case(
                "sp-no-client-id",
                Kind::Identity,
                json!({"type": 1, "tenantID": TENANT_ID, "clientPassword": secret}),
            ),
            &["spec.clientID is required for a service principal"],
        ),
        (
            case(
                "sp-no-tenant",
                Kind::Identity,
                json!({"type": 1, "clientID": CLIENT_ID, "clientPassword": secret}),
            ),
            &["spec.tenantID is required for a service principal"],
        ),
        (
            case(
                "sp-no-secret",
                Kind::Identity,
                json!({"type": 1, "clientID": CLIENT_ID, "tenantID": TENANT_ID}),
            ),
            &[
                "spec.clientPassword.name is required for a service principal",
                "spec.clientPassword.namespace is required for a service principal",
            ],
        ),
        (
            case(
                "cert-no-secret-namespace",
                Kind::Identity,
                json!({"type": 2, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": {"name": "s"}}),
            ),
            &["spec.clientPassword.namespace is required for a service principal"],
        ),
        (
            case(
                "cert-empty-client-id",
                Kind::Identity,
                json!({"type": 2, "clientID": "", "tenantID": TENANT_ID, "clientPassword": secret}),
            ),
            &["spec.clientID is required for a service principal"],
        ),
        (
            case(
                "four-aux-tenants",
                Kind::Identity,
                json!({"type": 1, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": secret, "auxiliaryTenantIDs": [AUX_1, AUX_2, AUX_3, AUX_4]}),
            ),
            &["spec.auxiliaryTenantIDs lists more than 3 tenants"],
        ),
        (
            case(
                "legacy-capitalized",
                Kind::Identity,
                json!({"type": 0, "ResourceID": RESOURCE_ID, "ClientID": CLIENT_ID}),
            ),
            &[
                "spec.ResourceID is the pre-1.6 spelling of spec.resourceID: rename",
                "spec.ClientID is the pre-1.6 spelling of spec.clientID: rename",
            ],
        ),
        (
            case(
                "legacy-lowercase",
                Kind::Identity,
                json!({"resourceid": RESOURCE_ID, "clientid": CLIENT_ID}),
            ),
            &[
                "spec.resourceid is the pre-1.6 spelling of spec.resourceID: rename",
                "spec.clientid is the pre-1.6 spelling of spec.clientID: rename",
            ],
        ),
        (
            case(
                "legacy-mixed",
                Kind::Identity,
                json!({"type": 0, "resourceID": RESOURCE_ID, "ClientID": CLIENT_ID}),
            ),
            &["spec.ClientID is the pre-1.6 spelling of spec.clientID: rename"],
        ),
        (
            case(
                "legacy-sp",
                Kind::Identity,
                json!({"type": 1, "clientID": CLIENT_ID, "TenantID": TENANT_ID, "ClientPassword": secret}),
            ),
            &[
                "spec.TenantID is the pre-1.6 spelling of spec.tenantID: rename",
                "spec.ClientPassword is the pre-1.6 spelling of spec.clientPassword: rename",
            ],
        ),
        (
            case(
                "legacy-secret-keys",
                Kind::Identity,
                json!({"type": 1, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": {"Name": "s", "Namespace": "default"}}),
            ),
            &[
                "spec.clientPassword.Name is the pre-1.6 spelling of spec.clientPassword.name: rename",
                "spec.clientPassword.Namespace is the pre-1.6 spelling of spec.clientPassword.namespace: rename",
            ],
        ),
        (
            case(
                "legacy-binding",
                Kind::Binding,
                json!({"AzureIdentity": "demo", "Selector": "DEMO"}),
            ),
            &[
                "spec.AzureIdentity is the pre-1.6 spelling of spec.azureIdentity: rename",
                "spec.Selector is the pre-1.6 spelling of spec.selector: rename",
            ],
        ),
        (
            case(
                "legacy-binding-lowercase",
                Kind::Binding,
                json!({"azureidentity": "demo", "selector": "DEMO"}),
            ),
            &["spec.azureidentity is the pre-1.6 spelling of spec.azureIdentity: rename"],
        ),
        (
            case(
                "legacy-exception",
                Kind::Exception,
                json!({"PodLabels": {"app": "mic"}}),
            ),
            &["spec.PodLabels is the pre-1.6 spelling of spec.podLabels: rename"],
        ),
        (
            case(
                "legacy-exception-lowercase",
                Kind::Exception,
                json!({"podlabels": {"app": "mic"}}),
            ),
            &["spec.podlabels is the pre-1.6 spelling of spec.podLabels: rename"],
        ),
        (
            case(
                "conflicting-resource-id",
                Kind::Identity,
                json!({"ResourceID": RESOURCE_ID.replace("DEMO", "OTHER"), "resourceID": RESOURCE_ID, "clientID": CLIENT_ID}),
            ),
            &[
                "spec.ResourceID and spec.resourceID are both set, to different values: delete spec.ResourceID",
            ],
        ),
        (
            case(
                "conflicting-secret",
                Kind::Identity,
                json!({"type": 1, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": secret, "ClientPassword": {"name": "other", "namespace": "default"}}),
            ),
            &["spec.ClientPassword and spec.clientPassword are both set, to different values"],
        ),
        (
            case(
                "conflicting-secret-namespace",
                Kind::Identity,
                json!({"type": 1, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": {"name": "s", "namespace": "default", "Namespace": "other"}}),
            ),
            &[
                "spec.clientPassword.Namespace and spec.clientPassword.namespace are both set, to different values",
            ],
        ),
        (
            case(
                "conflicting-ad-endpoint",
                Kind::Identity,
                json!({"type": 1, "clientID": CLIENT_ID, "tenantID": TENANT_ID, "clientPassword": secret, "adEndpoint": "https://login.microsoftonline.us/", "adendpoint": "https://login.microsoftonline.com/"}),
            ),
            &["spec.adendpoint and spec.adEndpoint are both set, to different values"],
        ),
        (
            case(
                "conflicting-selector",
                Kind::Binding,
                json!({"azureIdentity": "demo", "Selector": "demo", "selector": "DEMO"}),
            ),
            &["spec.Selector and spec.selector are both set, to different values"],
        ),
        (
            case(
                "conflicting-labels",
                Kind::Exception,
                json!({"PodLabels": {"app": "nmi"}, "podLabels": {"app": "mic"}}),
            ),
            &["spec.PodLabels and spec.podLabels are both set, to different values"],
        ),
        (
            Case {
                name: "no-spec",
                kind: Kind::Binding,
                annotations: json!({}),
                body: json!({}),
            },
            &["spec: Required value"],
        ),
    ];
    let mut failures = Vec::new();
    for (case, expected) in &cases {
        match case.create(&client, ns.name()).await {
            Ok(written) => failures.push(format!(
                "{}: accepted, stored {}",
                case.name, written.object.data
            )),
            Err(refusal) => {
                let missing: Vec<_> = expected
                    .iter()
                    .filter(|e| !refusal.message.contains(**e))
                    .collect();
                if refusal.code != 422 || !missing.is_empty() {
                    failures.push(format!(
                        "{}: expected a 422 naming {missing:?}, got {} {:?}",
                        case.name, refusal.code, refusal.message
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn other_undeclared_keys_are_refused_by_strict_validation_as_upstream() {
    let env = TestEnv::get().await;
    let ns = env.namespace("undeclared").await;
    let client = env.admin();
    // A typo of clientID that no release ever read: upstream's schema did not declare it either.
    let typo = case(
        "typo",
        Kind::Identity,
        json!({"type": 0, "resourceID": RESOURCE_ID, "clientId": CLIENT_ID}),
    );
    match typo.create(&client, ns.name()).await {
        Ok(written) => panic!("accepted: {}", written.object.data),
        Err(refusal) => {
            assert_eq!(refusal.code, 400, "{refusal:?}");
            assert!(
                refusal.message.contains(r#"unknown field "spec.clientId""#),
                "{refusal:?}"
            );
        }
    }
}
