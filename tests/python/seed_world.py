"""The IDs of deploy/emulator/seed-world.yaml that client tests rely on (kept in one place)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_WORLD_FILE = REPO_ROOT / "deploy" / "emulator" / "seed-world.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SUBSCRIPTION_ID = "6a1c4b1e-2f0d-4c5e-9a7b-3d2e1f0a9b8c"
CLUSTER_RG = "study4dev-je"
NODE_RG = "Study4Dev-JE-AKS-Study4Dev-JE-AKSResource"

SCALE_SET = "aks-agentpool-23456789-vmss"
STANDALONE_VM = "aks-standalone-vm"


def scale_set_instance(instance_id: int) -> str:
    """The machine name the emulator gives a scale-set instance (its IMDS endpoint key)."""
    return f"{SCALE_SET}_{instance_id}"


def identity_id(name: str, resource_group: str = NODE_RG) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )


class Kubelet:
    name = "aks-study4dev-je-agentpool"
    client_id = "5d0e8f3a-7c21-4b9e-a6d4-1f2e3c4b5a69"
    principal_id = "9e1d2c3b-4a5f-4e6d-8c7b-0a1f2e3d4c5b"
    resource_id = identity_id(name)


class Demo:
    name = "DEMO"
    client_id = "cb5569f2-8d09-4de1-a007-e02058e11d15"
    principal_id = "2b3c4d5e-6f70-4182-9a3b-4c5d6e7f8091"
    resource_id = identity_id(name)


class ExternalDns:
    name = "External-DNS-AKS-Study4Dev-JE"
    client_id = "4f3e2d1c-0b9a-4876-8543-210fedcba987"
    principal_id = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
    resource_id = identity_id(name)


class ServicePrincipal:
    display_name = "podid-seed-sp"
    client_id = "1c2d3e4f-5a6b-4c7d-8e9f-a0b1c2d3e4f5"
    object_id = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
    secret = "seed-sp-secret.emulator-only~0123456789"
    certificate_file = FIXTURES / "seed-sp-cert.pem"
    private_key_file = FIXTURES / "seed-sp-key.pem"
    certificate_sha1 = "8f34e47d76187b471f4645a96541afc6e9088506"


ARM_SCOPE = "https://management.azure.com/.default"
ARM_RESOURCE = "https://management.azure.com"
