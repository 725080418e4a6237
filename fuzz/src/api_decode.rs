//! The four kinds (and the pods and nodes MIC and NMI read) decoded from arbitrary text, as
//! the API server or a manifest gives them, then matched by MIC and NMI.
//!
//! Input: a stream of YAML documents (JSON is YAML), e.g. upstream's manifests. Each document
//! is decoded as the kind it names, and as each of the four kinds whatever it names. Every
//! decoded object re-serialised decodes to itself. The objects named and namespaced as the API
//! server serves them then go through `matching::check_world`.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use podid_api::{
    AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzurePodIdentityException,
};
use podid_mic::{NodeInfo, PodInfo};
use podid_nmi::{PodFacts, RequestedIdentity};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::matching::{Objects, check_world};

pub fn run(data: &[u8]) {
    let mut objects = Objects::default();
    let documents = serde_yaml_ng::Deserializer::from_slice(data);
    for document in documents.take(16) {
        // A document that does not parse ends the stream, as for every reader of manifests:
        // serde_yaml_ng panics on the documents after a broken one (its bug, not reached by
        // podid, whose readers stop at the first error).
        let Ok(value) = Value::deserialize_from(document) else {
            break;
        };
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let identity = decode::<AzureIdentity>(&value);
        let binding = decode::<AzureIdentityBinding>(&value);
        let assigned = decode::<AzureAssignedIdentity>(&value);
        let exception = decode::<AzurePodIdentityException>(&value);
        match kind.as_str() {
            "AzureIdentity" => objects.identities.extend(served(identity)),
            "AzureIdentityBinding" => objects.bindings.extend(served(binding)),
            "AzureAssignedIdentity" => objects.assigned.extend(served(assigned)),
            "AzurePodIdentityException" => objects.exceptions.extend(served(exception)),
            "Pod" => {
                if let Some(pod) = served(decode::<Pod>(&value)) {
                    objects.pods.push(pod_views(&pod));
                }
            }
            "Node" => {
                if let Some(node) = decode::<Node>(&value) {
                    objects.nodes.push(NodeInfo {
                        name: node.name_any(),
                        provider_id: node.spec.and_then(|s| s.provider_id),
                    });
                }
            }
            _ => {}
        }
    }
    let mut requests = vec![RequestedIdentity::Unspecified];
    for identity in &objects.identities {
        requests.extend(
            identity
                .spec
                .client_id
                .clone()
                .map(RequestedIdentity::ClientId),
        );
        requests.extend(
            identity
                .spec
                .resource_id
                .clone()
                .map(RequestedIdentity::ResourceId),
        );
    }
    requests.truncate(4);
    objects.requests = requests;
    objects.dedup();
    check_world(&objects, false, 0);
    check_world(&objects, true, 19);
}

/// Helper: a `Value` from one YAML document.
trait FromDocument: Sized {
    fn deserialize_from(
        document: serde_yaml_ng::Deserializer,
    ) -> Result<Self, serde_yaml_ng::Error>;
}

impl FromDocument for Value {
    fn deserialize_from(
        document: serde_yaml_ng::Deserializer,
    ) -> Result<Self, serde_yaml_ng::Error> {
        serde::Deserialize::deserialize(document)
    }
}

/// Decodes `value` as `T`; a decoded object re-serialised decodes to itself.
fn decode<T>(value: &Value) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let object: T = serde_json::from_value(value.clone()).ok()?;
    let json = serde_json::to_value(&object).expect("a decoded object serialises");
    let again: T = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("{json} does not decode again: {e}"));
    assert_eq!(again, object, "decoding {json} changed the object");
    Some(object)
}

/// The object as the API server serves it: named, and in a namespace (`default` if none).
fn served<T: ResourceExt>(object: Option<T>) -> Option<T> {
    let mut object = object?;
    if object.meta().name.as_deref().is_none_or(str::is_empty) {
        return None;
    }
    if object.meta().namespace.as_deref().is_none_or(str::is_empty) {
        object.meta_mut().namespace = Some("default".into());
    }
    Some(object)
}

/// What MIC and NMI read from a pod, through their own conversions.
fn pod_views(pod: &Pod) -> (PodInfo, PodFacts) {
    (PodInfo::of(pod), podid_nmi::state::pod_facts(pod))
}
