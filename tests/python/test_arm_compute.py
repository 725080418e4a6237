"""azure-mgmt-compute against the emulator's ARM: identity PATCH on the scale set and the VM
(add with ``{}``, remove with ``null``, type changes), the long-running operation to completion,
and what IMDS serves afterwards (docs/azure-wire.md §3.4, §3.5).

azure-mgmt-compute 39 serialises a ``None`` map value as JSON ``null`` (checked below), so the
SDK can express every removal MIC performs."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential, CredentialUnavailableError, ManagedIdentityCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute._utils.model_base import SdkJSONEncoder
from azure.mgmt.compute.models import (
    UserAssignedIdentitiesValue,
    VirtualMachineIdentity,
    VirtualMachineScaleSetIdentity,
    VirtualMachineScaleSetUpdate,
    VirtualMachineUpdate,
)

from jwt_claims import app_id, claims
from seed_world import (
    ARM_SCOPE,
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

NODE_RG_SCOPE = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{NODE_RG}"


@pytest.fixture
def contributor_world(seed_world) -> dict:
    """The seed world, with the service principal allowed to change compute identities."""
    for role in ("Virtual Machine Contributor", "Managed Identity Operator"):
        seed_world["roleAssignments"].append(
            {"principal": ServicePrincipal.display_name, "role": role, "scope": NODE_RG_SCOPE}
        )
    return seed_world


def compute_client(emulator) -> ComputeManagementClient:
    ca = str(emulator.endpoints.ca_file)
    credential = ClientSecretCredential(
        TENANT_ID,
        ServicePrincipal.client_id,
        ServicePrincipal.secret,
        authority=emulator.endpoints.entra,
        disable_instance_discovery=True,
        connection_verify=ca,
    )
    return ComputeManagementClient(
        credential,
        SUBSCRIPTION_ID,
        base_url=emulator.endpoints.arm + "/",
        credential_scopes=[ARM_SCOPE],
        connection_verify=ca,
        # Used only when the emulator sends no Retry-After on the operation.
        polling_interval=1,
    )


@pytest.fixture
def arm(start_emulator, contributor_world):
    emulator = start_emulator(contributor_world)
    client = compute_client(emulator)
    yield emulator, client
    client.close()


def assigned(identity) -> dict[str, object]:
    """userAssignedIdentities keyed by lower-cased ID (ARM keys are case-insensitive)."""
    if identity is None or not identity.user_assigned_identities:
        return {}
    return {k.lower(): v for k, v in identity.user_assigned_identities.items()}


def scale_set_user_identities(changes: dict) -> VirtualMachineScaleSetUpdate:
    """A scale-set PATCH body of type UserAssigned: `{id: UserAssignedIdentitiesValue()}` adds an
    identity, `{id: None}` removes it (the SDK sends null)."""
    return VirtualMachineScaleSetUpdate(
        identity=VirtualMachineScaleSetIdentity(type="UserAssigned", user_assigned_identities=changes)
    )


def imds_token_for(emulator, monkeypatch, machine: str, client_id: str):
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", emulator.imds(machine))
    credential = ManagedIdentityCredential(client_id=client_id)
    try:
        return credential.get_token(ARM_SCOPE)
    finally:
        credential.close()


def test_the_sdk_sends_null_to_remove_an_identity():
    body = scale_set_user_identities({Demo.resource_id: None})
    sent = json.loads(json.dumps(body, cls=SdkJSONEncoder, exclude_readonly=True))
    assert sent == {
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {Demo.resource_id: None}}
    }


def test_scale_set_identity_add_then_remove(arm, monkeypatch):
    emulator, client = arm
    scale_sets = client.virtual_machine_scale_sets

    before = scale_sets.get(NODE_RG, SCALE_SET)
    assert before.name == SCALE_SET
    assert before.identity.type == "UserAssigned"
    assert set(assigned(before.identity)) == {Kubelet.resource_id.lower()}

    # Before the assignment the node's IMDS does not know DEMO.
    with pytest.raises(CredentialUnavailableError, match="Identity not found"):
        imds_token_for(emulator, monkeypatch, scale_set_instance(1), Demo.client_id)

    added = scale_sets.begin_update(
        NODE_RG,
        SCALE_SET,
        scale_set_user_identities({Demo.resource_id: UserAssignedIdentitiesValue()}),
    ).result()
    assert added.properties.provisioning_state == "Succeeded"
    assert set(assigned(added.identity)) == {Kubelet.resource_id.lower(), Demo.resource_id.lower()}
    demo = assigned(added.identity)[Demo.resource_id.lower()]
    assert demo.client_id == Demo.client_id
    assert demo.principal_id == Demo.principal_id

    after_add = scale_sets.get(NODE_RG, SCALE_SET)
    assert set(assigned(after_add.identity)) == set(assigned(added.identity))
    assert after_add.properties.provisioning_state == "Succeeded"

    # Every instance of the scale set now serves DEMO.
    token = imds_token_for(emulator, monkeypatch, scale_set_instance(1), Demo.client_id)
    assert app_id(claims(token.token)) == Demo.client_id

    removed = scale_sets.begin_update(
        NODE_RG,
        SCALE_SET,
        scale_set_user_identities({Demo.resource_id: None}),
    ).result()
    assert set(assigned(removed.identity)) == {Kubelet.resource_id.lower()}
    after_remove = scale_sets.get(NODE_RG, SCALE_SET)
    assert set(assigned(after_remove.identity)) == {Kubelet.resource_id.lower()}
    # The seed world has no revocation delay: IMDS stops serving DEMO at once.
    with pytest.raises(CredentialUnavailableError, match="Identity not found"):
        imds_token_for(emulator, monkeypatch, scale_set_instance(2), Demo.client_id)

    # Two PATCHes, each answered 200 and followed to completion through its async operation.
    assert emulator.count("arm.vmss.patch") == emulator.count("arm.vmss.patch", 200) == 2
    assert emulator.count("arm.operation.get", 200) >= 2


def test_scale_set_keys_match_case_insensitively_as_mic_sends_them(arm):
    emulator, client = arm
    scale_sets = client.virtual_machine_scale_sets
    # MIC lower-cases every ID it sends; the removal below uses the casing of the world.
    scale_sets.begin_update(
        NODE_RG,
        SCALE_SET,
        scale_set_user_identities({ExternalDns.resource_id.lower(): UserAssignedIdentitiesValue()}),
    ).result()
    assert ExternalDns.resource_id.lower() in assigned(scale_sets.get(NODE_RG, SCALE_SET).identity)
    scale_sets.begin_update(
        NODE_RG.lower(),
        SCALE_SET.upper(),
        scale_set_user_identities({ExternalDns.resource_id: None}),
    ).result()
    keys = list(scale_sets.get(NODE_RG, SCALE_SET).identity.user_assigned_identities)
    assert [k.lower() for k in keys] == [Kubelet.resource_id.lower()]


def test_the_last_user_identity_goes_by_type_none_not_by_null(arm):
    emulator, client = arm
    scale_sets = client.virtual_machine_scale_sets
    with pytest.raises(HttpResponseError) as failure:
        scale_sets.begin_update(
            NODE_RG,
            SCALE_SET,
            scale_set_user_identities({Kubelet.resource_id: None}),
        ).result()
    assert failure.value.status_code == 400
    assert failure.value.error.code == "InvalidParameter"
    assert set(assigned(scale_sets.get(NODE_RG, SCALE_SET).identity)) == {Kubelet.resource_id.lower()}

    cleared = scale_sets.begin_update(
        NODE_RG,
        SCALE_SET,
        VirtualMachineScaleSetUpdate(identity=VirtualMachineScaleSetIdentity(type="None")),
    ).result()
    assert assigned(cleared.identity) == {}
    after = scale_sets.get(NODE_RG, SCALE_SET)
    assert after.identity is None or after.identity.type == "None"


def test_vm_identity_add_then_remove_keeps_the_system_identity(arm, monkeypatch):
    emulator, client = arm
    vms = client.virtual_machines

    before = vms.get(NODE_RG, STANDALONE_VM)
    assert before.identity.type == "SystemAssigned"
    system_principal = before.identity.principal_id
    assert system_principal

    added = vms.begin_update(
        NODE_RG,
        STANDALONE_VM,
        VirtualMachineUpdate(
            identity=VirtualMachineIdentity(
                type="SystemAssigned, UserAssigned",
                user_assigned_identities={
                    Demo.resource_id: UserAssignedIdentitiesValue(),
                    ExternalDns.resource_id: UserAssignedIdentitiesValue(),
                },
            )
        ),
    ).result()
    assert added.identity.type == "SystemAssigned, UserAssigned"
    assert added.identity.principal_id == system_principal
    assert set(assigned(added.identity)) == {Demo.resource_id.lower(), ExternalDns.resource_id.lower()}
    token = imds_token_for(emulator, monkeypatch, STANDALONE_VM, ExternalDns.client_id)
    assert app_id(claims(token.token)) == ExternalDns.client_id

    # null removes one identity and keeps the rest.
    one_removed = vms.begin_update(
        NODE_RG,
        STANDALONE_VM,
        VirtualMachineUpdate(
            identity=VirtualMachineIdentity(
                type="SystemAssigned, UserAssigned",
                user_assigned_identities={Demo.resource_id: None},
            )
        ),
    ).result()
    assert set(assigned(one_removed.identity)) == {ExternalDns.resource_id.lower()}

    # The last one goes with the type: back to the system identity only, same principal.
    system_only = vms.begin_update(
        NODE_RG,
        STANDALONE_VM,
        VirtualMachineUpdate(identity=VirtualMachineIdentity(type="SystemAssigned")),
    ).result()
    assert system_only.identity.type == "SystemAssigned"
    assert assigned(system_only.identity) == {}
    after = vms.get(NODE_RG, STANDALONE_VM)
    assert after.identity.type == "SystemAssigned"
    assert after.identity.principal_id == system_principal
    assert assigned(after.identity) == {}

    assert emulator.count("arm.vm.patch") == emulator.count("arm.vm.patch", 200) == 3


def test_assigning_an_identity_that_does_not_exist_fails_the_whole_request(arm):
    emulator, client = arm
    missing = Demo.resource_id.replace("/DEMO", "/does-not-exist")
    with pytest.raises(HttpResponseError) as failure:
        client.virtual_machine_scale_sets.begin_update(
            NODE_RG,
            SCALE_SET,
            scale_set_user_identities(
                {Demo.resource_id: UserAssignedIdentitiesValue(), missing: UserAssignedIdentitiesValue()}
            ),
        ).result()
    assert failure.value.status_code == 400
    assert failure.value.error.code == "FailedIdentityOperation"
    assert missing.lower() in str(failure.value).lower()
    # Nothing half-applied: DEMO was not added either.
    current = client.virtual_machine_scale_sets.get(NODE_RG, SCALE_SET)
    assert set(assigned(current.identity)) == {Kubelet.resource_id.lower()}


def test_a_failed_operation_reports_its_error_and_changes_nothing(arm):
    emulator, client = arm
    emulator.admin(
        "POST",
        "/admin/faults",
        {
            "surface": "arm",
            "method": "PATCH",
            "path": "virtualMachineScaleSets/",
            "times": 1,
            "action": {
                "kind": "lroFailure",
                "code": "InternalExecutionError",
                "message": "An internal execution error occurred.",
            },
        },
    )
    update = scale_set_user_identities({Demo.resource_id: UserAssignedIdentitiesValue()})
    poller = client.virtual_machine_scale_sets.begin_update(NODE_RG, SCALE_SET, update)
    with pytest.raises(HttpResponseError) as failure:
        poller.result()
    assert "InternalExecutionError" in str(failure.value)
    after = client.virtual_machine_scale_sets.get(NODE_RG, SCALE_SET)
    assert after.properties.provisioning_state == "Failed"
    assert set(assigned(after.identity)) == {Kubelet.resource_id.lower()}

    # Retrying the same PATCH (what MIC does) succeeds.
    retried = client.virtual_machine_scale_sets.begin_update(NODE_RG, SCALE_SET, update).result()
    assert Demo.resource_id.lower() in assigned(retried.identity)
    assert retried.properties.provisioning_state == "Succeeded"


def test_a_throttled_read_is_retried_after_its_retry_after(arm):
    emulator, client = arm
    emulator.admin(
        "POST",
        "/admin/faults",
        {
            "surface": "arm",
            "method": "GET",
            "path": "virtualMachineScaleSets/",
            "times": 1,
            "action": {"kind": "error", "status": 429, "retryAfter": 1},
        },
    )
    assert client.virtual_machine_scale_sets.get(NODE_RG, SCALE_SET).name == SCALE_SET
    reads = [
        e["status"]
        for e in emulator.journal(surface="arm")
        if e["method"] == "GET" and "/virtualMachineScaleSets/" in e["path"]
    ]
    assert reads == [429, 200]


def test_a_reader_cannot_change_identities(start_emulator):
    # The seed world's service principal is only Reader on the node resource group.
    emulator = start_emulator()
    client = compute_client(emulator)
    try:
        assert client.virtual_machine_scale_sets.get(NODE_RG, SCALE_SET).name == SCALE_SET
        with pytest.raises(HttpResponseError) as failure:
            client.virtual_machine_scale_sets.begin_update(
                NODE_RG,
                SCALE_SET,
                scale_set_user_identities({Demo.resource_id: UserAssignedIdentitiesValue()}),
            ).result()
    finally:
        client.close()
    assert failure.value.status_code == 403
    assert failure.value.error.code == "AuthorizationFailed"
    assert ServicePrincipal.object_id in str(failure.value)
