"""deploy/emulator/seed-world.yaml: the emulator accepts it, and it says what the seed story and
the tests (seed_world.py) rely on."""

from __future__ import annotations

from seed_world import (
    CLUSTER_RG,
    NODE_RG,
    SCALE_SET,
    STANDALONE_VM,
    SUBSCRIPTION_ID,
    TENANT_ID,
    Demo,
    ExternalDns,
    Kubelet,
    ServicePrincipal,
    scale_set_instance,
)


def test_the_emulator_starts_the_seed_world_with_one_imds_per_machine(emulator):
    endpoints = emulator.endpoints
    assert sorted(endpoints.imds) == sorted(
        [scale_set_instance(0), scale_set_instance(1), scale_set_instance(2), STANDALONE_VM]
    )
    for url in [*endpoints.imds.values(), endpoints.admin]:
        assert url.startswith("http://127.0.0.1:")
    for url in (endpoints.arm, endpoints.entra):
        assert url.startswith("https://127.0.0.1:")
    assert "BEGIN CERTIFICATE" in endpoints.ca_file.read_text()


def test_the_seed_world_holds_the_story_ids(seed_world):
    assert seed_world["tenantId"] == TENANT_ID
    (subscription,) = seed_world["subscriptions"]
    assert subscription["id"] == SUBSCRIPTION_ID
    groups = {g["name"]: g["location"] for g in subscription["resourceGroups"]}
    assert groups == {CLUSTER_RG: "japaneast", NODE_RG: "japaneast"}

    identities = {i["name"]: i for i in seed_world["userAssignedIdentities"]}
    for expected in (Kubelet, Demo, ExternalDns):
        identity = identities[expected.name]
        assert identity["resourceGroup"] == NODE_RG
        assert identity["clientId"] == expected.client_id
        assert identity["principalId"] == expected.principal_id

    (scale_set,) = seed_world["virtualMachineScaleSets"]
    assert scale_set["name"] == SCALE_SET
    assert scale_set["identity"]["userAssigned"] == [Kubelet.name]
    assert [i["instanceId"] for i in scale_set["instances"]] == ["0", "1", "2"]
    (vm,) = seed_world["virtualMachines"]
    assert vm["name"] == STANDALONE_VM and vm["identity"] == {"systemAssigned": True}

    (sp,) = seed_world["servicePrincipals"]
    assert sp["clientId"] == ServicePrincipal.client_id
    assert sp["secrets"] == [ServicePrincipal.secret]
    assert sp["certificates"][0].strip() == ServicePrincipal.certificate_file.read_text().strip()


def test_the_seed_world_grants_the_roles_of_the_story(seed_world):
    node_rg = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{NODE_RG}"
    cluster_rg = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{CLUSTER_RG}"
    grants = {(a["principal"], a["role"], a["scope"]) for a in seed_world["roleAssignments"]}
    assert (Kubelet.name, "Managed Identity Operator", node_rg) in grants
    assert (Kubelet.name, "Virtual Machine Contributor", node_rg) in grants
    assert (Demo.name, "Reader", node_rg) in grants
    assert (ExternalDns.name, "Reader", cluster_rg) in grants
    assert any(
        p == ExternalDns.name
        and r == "DNS Zone Contributor"
        and s.startswith(cluster_rg + "/providers/Microsoft.Network/dnszones/")
        for p, r, s in grants
    )
    assert (ServicePrincipal.display_name, "Reader", node_rg) in grants
