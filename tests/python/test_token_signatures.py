"""Tokens from both token sources verify with a real JWT library (PyJWT) against the keys the
tenant publishes (its OpenID configuration's jwks_uri), as a resource server would check them."""

from __future__ import annotations

import jwt
import pytest
import requests
from azure.identity import ClientSecretCredential, ManagedIdentityCredential

from seed_world import ARM_RESOURCE, ARM_SCOPE, TENANT_ID, Kubelet, ServicePrincipal, scale_set_instance

AUDIENCES = [ARM_RESOURCE, ARM_RESOURCE + "/"]


@pytest.fixture
def tenant_keys(emulator) -> dict:
    with requests.Session() as session:
        session.verify = str(emulator.endpoints.ca_file)
        config = session.get(
            f"{emulator.endpoints.entra}/{TENANT_ID}/v2.0/.well-known/openid-configuration"
        ).json()
        jwks = session.get(config["jwks_uri"]).json()
    return {key["kid"]: jwt.PyJWK(key) for key in jwks["keys"]}


def verify(token: str, tenant_keys: dict) -> dict:
    kid = jwt.get_unverified_header(token)["kid"]
    assert kid in tenant_keys, f"token key {kid} is not published; published: {sorted(tenant_keys)}"
    return jwt.decode(token, tenant_keys[kid].key, algorithms=["RS256"], audience=AUDIENCES)


def service_principal_token(emulator) -> str:
    with ClientSecretCredential(
        TENANT_ID,
        ServicePrincipal.client_id,
        ServicePrincipal.secret,
        authority=emulator.endpoints.entra,
        disable_instance_discovery=True,
        connection_verify=str(emulator.endpoints.ca_file),
    ) as credential:
        return credential.get_token(ARM_SCOPE).token


def managed_identity_token(emulator, monkeypatch) -> str:
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", emulator.imds(scale_set_instance(0)))
    with ManagedIdentityCredential(client_id=Kubelet.client_id) as credential:
        return credential.get_token(ARM_SCOPE).token


def test_service_principal_tokens_verify_with_the_tenant_keys(emulator, tenant_keys):
    verified = verify(service_principal_token(emulator), tenant_keys)
    assert verified["tid"] == TENANT_ID
    assert verified["oid"] == ServicePrincipal.object_id


def test_managed_identity_tokens_verify_with_the_tenant_keys(emulator, tenant_keys, monkeypatch):
    verified = verify(managed_identity_token(emulator, monkeypatch), tenant_keys)
    assert verified["tid"] == TENANT_ID
    assert verified["oid"] == Kubelet.principal_id


def test_a_tampered_token_does_not_verify(emulator, tenant_keys, monkeypatch):
    header, payload, signature = managed_identity_token(emulator, monkeypatch).split(".")
    other_payload = service_principal_token(emulator).split(".")[1]
    with pytest.raises(jwt.InvalidSignatureError):
        verify(".".join([header, other_payload, signature]), tenant_keys)
