"""scripts/role-assignment: the seed's permission step (upstream's hack/role-assignment.sh),
printed as `az` commands or applied to the emulator's world through its admin API."""

from __future__ import annotations

import os
import subprocess

from seed_world import NODE_RG, REPO_ROOT, SUBSCRIPTION_ID, Kubelet

SCRIPT = REPO_ROOT / "scripts" / "role-assignment"
# Azure's built-in role definition IDs, as the emulator's world holds them.
ROLE_IDS = {
    "f1a07417-d97a-45cb-824c-7a7467783830": "Managed Identity Operator",
    "9980e02c-c2be-4d73-94e8-173b1dc7cf3c": "Virtual Machine Contributor",
}
KUBELET_ROLES = set(ROLE_IDS.values())


def run(*args: str, identity_rg: str | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "SUBSCRIPTION_ID": SUBSCRIPTION_ID,
        "RESOURCE_GROUP": "study4dev-je",
        "CLUSTER_NAME": "study4dev-je-aks",
        "NODE_RESOURCE_GROUP": NODE_RG,
        "KUBELET_CLIENT_ID": Kubelet.client_id,
    }
    if identity_rg:
        env["IDENTITY_RESOURCE_GROUP"] = identity_rg
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
    )


def kubelet_grants(emulator) -> set[tuple[str, str]]:
    world = emulator.admin("GET", "/admin/world")
    grants = set()
    for assignment in world["roleAssignments"]:
        properties = assignment["properties"]
        if properties["principalId"] == Kubelet.principal_id:
            role = properties["roleDefinitionId"].rsplit("/", 1)[-1]
            grants.add((ROLE_IDS.get(role, role), properties["scope"].lower()))
    return grants


def test_it_prints_upstreams_az_commands():
    result = run(identity_rg="study4dev-je")
    assert result.returncode == 0, result.stderr
    node_scope = f"/subscriptions/{SUBSCRIPTION_ID}/resourcegroups/{NODE_RG}"
    identity_scope = f"/subscriptions/{SUBSCRIPTION_ID}/resourcegroups/study4dev-je"
    assert result.stdout.splitlines() == [
        f'az role assignment create --role "Managed Identity Operator" '
        f"--assignee {Kubelet.client_id} --scope {node_scope}",
        f'az role assignment create --role "Virtual Machine Contributor" '
        f"--assignee {Kubelet.client_id} --scope {node_scope}",
        f'az role assignment create --role "Managed Identity Operator" '
        f"--assignee {Kubelet.client_id} --scope {identity_scope}",
    ]


def test_it_grants_the_kubelet_identity_its_roles_in_the_emulator(start_emulator, seed_world):
    """The seed world without the kubelet's grants, as a cluster before the seed's permission
    step; the script adds exactly the two of them on the node resource group."""
    seed_world["roleAssignments"] = [
        a for a in seed_world["roleAssignments"] if a["principal"] != Kubelet.name
    ]
    emulator = start_emulator(seed_world)
    assert kubelet_grants(emulator) == set()

    result = run("--emulator", emulator.admin_base)
    assert result.returncode == 0, result.stderr

    node_scope = f"/subscriptions/{SUBSCRIPTION_ID}/resourcegroups/{NODE_RG}".lower()
    assert kubelet_grants(emulator) == {(role, node_scope) for role in KUBELET_ROLES}


def test_it_refuses_an_emulator_that_is_not_on_loopback():
    result = run("--emulator", "http://10.0.0.1:8080")
    assert result.returncode != 0
    assert "must be on loopback" in result.stderr
