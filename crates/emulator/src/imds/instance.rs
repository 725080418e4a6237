//! The `/metadata/instance` document of a machine and walking it by path (azure-wire.md §1.6).
//! Every primitive is a string, and fields that do not apply are present as `""`.

use std::net::Ipv4Addr;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::admission::Format;
use crate::world::{Compute, Machine, MachineRef};

pub fn document(compute: &Compute, machine: &Machine, machine_ref: &MachineRef) -> Value {
    let (resource_id, scale_set_name) = match machine_ref {
        MachineRef::VirtualMachine { .. } => (compute.id.to_string(), String::new()),
        MachineRef::ScaleSetInstance { instance_id, .. } => (
            format!("{}/virtualMachines/{instance_id}", compute.id),
            compute.name.clone(),
        ),
    };
    json!({
        "compute": {
            "azEnvironment": "AzurePublicCloud",
            "isHostCompatibilityLayerVm": "false",
            "location": compute.location,
            "name": machine.name,
            "offer": "",
            "osType": "Linux",
            "platformFaultDomain": "0",
            "platformUpdateDomain": "0",
            "provider": "Microsoft.Compute",
            "publisher": "",
            "resourceGroupName": compute.resource_group,
            "resourceId": resource_id,
            "sku": "",
            "subscriptionId": compute.subscription,
            "tags": "",
            "tagsList": [],
            "version": "",
            "vmId": machine.vm_id,
            "vmScaleSetName": scale_set_name,
            "vmSize": compute.vm_size,
            "zone": "",
        },
        "network": {
            "interface": [{
                "ipv4": {
                    "ipAddress": [{ "privateIpAddress": machine.private_ip, "publicIpAddress": "" }],
                    "subnet": subnet(&machine.private_ip),
                },
                "ipv6": { "ipAddress": [] },
                "macAddress": mac_address(&machine.vm_id),
            }],
        },
    })
}

/// The /24 around an IPv4 address (the emulator does not model subnets), or none.
fn subnet(private_ip: &str) -> Value {
    match private_ip.parse::<Ipv4Addr>() {
        Ok(ip) => {
            let [a, b, c, _] = ip.octets();
            json!([{ "address": format!("{a}.{b}.{c}.0"), "prefix": "24" }])
        }
        Err(_) => json!([]),
    }
}

/// A stable MAC in Azure's `000D3A` range and IMDS's format (upper-case hex, no separators).
fn mac_address(vm_id: &str) -> String {
    let digest = Sha256::digest(vm_id.as_bytes());
    format!("000D3A{:02X}{:02X}{:02X}", digest[0], digest[1], digest[2])
}

/// The node at `path` (object keys, array indices), if any.
pub fn walk<'v>(doc: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(doc, |node, segment| match node {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rendered {
    Json(Value),
    Text(String),
}

/// Why a node cannot be rendered in the requested format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafNeedsText;

/// Renders a node: JSON for inner nodes; leaves only as text (real IMDS refuses JSON for
/// leaves). Inner nodes as text list their children one per line, inner children with `/`.
pub fn render(node: &Value, format: Format) -> Result<Rendered, LeafNeedsText> {
    let child_line = |name: String, child: &Value| {
        if child.is_object() || child.is_array() {
            format!("{name}/")
        } else {
            name
        }
    };
    match (node, format) {
        (Value::Object(_) | Value::Array(_), Format::Json) => Ok(Rendered::Json(node.clone())),
        (_, Format::Json) => Err(LeafNeedsText),
        (Value::Object(map), Format::Text) => Ok(Rendered::Text(
            map.iter()
                .map(|(k, v)| child_line(k.clone(), v))
                .collect::<Vec<_>>()
                .join("\n"),
        )),
        (Value::Array(items), Format::Text) => Ok(Rendered::Text(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| child_line(i.to_string(), v))
                .collect::<Vec<_>>()
                .join("\n"),
        )),
        (Value::String(s), Format::Text) => Ok(Rendered::Text(s.clone())),
        (other, Format::Text) => Ok(Rendered::Text(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        json!({"compute": {"vmId": "abc", "tagsList": []}, "network": {"interface": [{"macAddress": "M"}]}})
    }

    fn path(p: &str) -> Vec<String> {
        p.split('/').map(str::to_string).collect()
    }

    #[test]
    fn walking_follows_keys_and_indices() {
        let d = doc();
        assert_eq!(walk(&d, &path("compute/vmId")), Some(&json!("abc")));
        assert_eq!(
            walk(&d, &path("network/interface/0/macAddress")),
            Some(&json!("M"))
        );
        assert_eq!(walk(&d, &path("network/interface/1")), None);
        assert_eq!(walk(&d, &path("compute/vmId/x")), None);
        assert_eq!(walk(&d, &[]), Some(&d));
    }

    #[test]
    fn leaves_need_text_and_inner_nodes_list_children_as_text() {
        let d = doc();
        assert_eq!(render(&json!("abc"), Format::Json), Err(LeafNeedsText));
        assert_eq!(
            render(&json!("abc"), Format::Text),
            Ok(Rendered::Text("abc".into()))
        );
        assert_eq!(
            render(&d["compute"], Format::Text),
            Ok(Rendered::Text("tagsList/\nvmId".into()))
        );
        assert_eq!(
            render(&d["network"]["interface"], Format::Text),
            Ok(Rendered::Text("0/".into()))
        );
    }

    #[test]
    fn every_primitive_in_a_document_is_a_string() {
        use crate::armid::ArmId;
        use crate::world::IdentitySet;
        let compute = Compute {
            id: ArmId::new(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/pool",
            ),
            subscription: "s".into(),
            resource_group: "rg".into(),
            name: "pool".into(),
            location: "eastus".into(),
            vm_size: "Standard_DS2_v2".into(),
            unique_id: "u".into(),
            provisioning_state: "Succeeded".into(),
            identity: IdentitySet::default(),
            operation_in_flight: None,
        };
        let machine = Machine {
            name: "pool_3".into(),
            computer_name: "pool000003".into(),
            vm_id: "v".into(),
            private_ip: "10.240.0.7".into(),
            imds_listen: "127.0.0.1:0".into(),
        };
        let r = MachineRef::ScaleSetInstance {
            key: "k".into(),
            instance_id: "3".into(),
        };
        let d = document(&compute, &machine, &r);
        fn all_strings(v: &Value) -> bool {
            match v {
                Value::Object(m) => m.values().all(all_strings),
                Value::Array(a) => a.iter().all(all_strings),
                Value::String(_) => true,
                _ => false,
            }
        }
        assert!(all_strings(&d));
        assert!(
            d["compute"]["resourceId"]
                .as_str()
                .is_some_and(|id| id.ends_with("/pool/virtualMachines/3"))
        );
        assert_eq!(
            d["network"]["interface"][0]["ipv4"]["subnet"][0]["address"],
            "10.240.0.0"
        );
        assert_eq!(
            d["network"]["interface"][0]["macAddress"]
                .as_str()
                .map(str::len),
            Some(12)
        );
    }
}
