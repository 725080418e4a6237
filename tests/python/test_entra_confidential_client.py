"""Confidential clients against the emulator's Entra ID: msal's ConfidentialClientApplication and
azure-identity's ClientSecretCredential / CertificateCredential (azure-wire.md §2, §4.4). Every
client has instance discovery off (else MSAL asks the real Microsoft host; the network guard
would fail the test) and trusts the emulator's CA."""

from __future__ import annotations

import asyncio
import time

import msal
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CertificateCredential, ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jwt_claims import app_id, claims
from seed_world import ARM_RESOURCE, ARM_SCOPE, TENANT_ID, ServicePrincipal

WRONG_SECRET = "not-the-secret"


def assert_service_principal_token(access_token: str) -> dict:
    c = claims(access_token)
    assert app_id(c) == ServicePrincipal.client_id
    assert c["oid"] == ServicePrincipal.object_id
    assert c["tid"] == TENANT_ID
    assert c["aud"].rstrip("/") == ARM_RESOURCE
    assert TENANT_ID in c["iss"]
    assert c["exp"] > time.time()
    return c


@pytest.fixture
def ca_session(emulator):
    session = requests.Session()
    session.verify = str(emulator.endpoints.ca_file)
    yield session
    session.close()


def msal_app(emulator, credential, http_client=None):
    return msal.ConfidentialClientApplication(
        ServicePrincipal.client_id,
        client_credential=credential,
        authority=f"{emulator.endpoints.entra}/{TENANT_ID}",
        instance_discovery=False,
        http_client=http_client,
    )


def entra_requests(emulator) -> list[dict]:
    return emulator.journal(surface="entra")


# -- msal ---------------------------------------------------------------------------------------


def test_msal_client_secret(emulator, ca_session):
    result = msal_app(emulator, ServicePrincipal.secret, ca_session).acquire_token_for_client(
        scopes=[ARM_SCOPE]
    )
    assert "access_token" in result, result
    assert result["token_type"].lower() == "bearer"
    assert int(result["expires_in"]) > 0
    assert_service_principal_token(result["access_token"])
    # MSAL reads the tenant's OpenID configuration, then posts to its token endpoint.
    paths = [(e["method"], e["path"]) for e in entra_requests(emulator)]
    assert ("GET", f"/{TENANT_ID}/v2.0/.well-known/openid-configuration") in paths
    assert ("POST", f"/{TENANT_ID}/oauth2/v2.0/token") in paths


def test_msal_trusts_the_emulator_ca_through_requests_ca_bundle(emulator, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.endpoints.ca_file))
    result = msal_app(emulator, ServicePrincipal.secret).acquire_token_for_client(scopes=[ARM_SCOPE])
    assert "access_token" in result, result
    assert_service_principal_token(result["access_token"])


def test_msal_rejects_a_wrong_secret_with_aadsts7000215(emulator, ca_session):
    result = msal_app(emulator, WRONG_SECRET, ca_session).acquire_token_for_client(scopes=[ARM_SCOPE])
    assert "access_token" not in result
    assert result.get("error") == "invalid_client", result
    assert "AADSTS7000215" in result.get("error_description", ""), result
    assert 7000215 in result.get("error_codes", []), result


@pytest.mark.parametrize(
    "with_chain", [False, True], ids=["thumbprint", "thumbprint+x5c"]
)
def test_msal_client_certificate(emulator, ca_session, with_chain):
    credential = {
        "private_key": ServicePrincipal.private_key_file.read_text(),
        "thumbprint": ServicePrincipal.certificate_sha1,
    }
    if with_chain:
        credential["public_certificate"] = ServicePrincipal.certificate_file.read_text()
    result = msal_app(emulator, credential, ca_session).acquire_token_for_client(scopes=[ARM_SCOPE])
    assert "access_token" in result, result
    assert_service_principal_token(result["access_token"])


def test_msal_rejects_a_certificate_the_app_does_not_have(emulator, ca_session):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    credential = {
        "private_key": stranger.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        # The registered thumbprint, but a signature the registered key did not make.
        "thumbprint": ServicePrincipal.certificate_sha1,
    }
    result = msal_app(emulator, credential, ca_session).acquire_token_for_client(scopes=[ARM_SCOPE])
    assert "access_token" not in result
    assert result.get("error") == "invalid_client", result
    assert "AADSTS" in result.get("error_description", ""), result


# -- azure-identity -----------------------------------------------------------------------------


def identity_kwargs(emulator) -> dict:
    return {
        "authority": emulator.endpoints.entra,
        "disable_instance_discovery": True,
        "connection_verify": str(emulator.endpoints.ca_file),
    }


def test_client_secret_credential(emulator):
    credential = ClientSecretCredential(
        TENANT_ID, ServicePrincipal.client_id, ServicePrincipal.secret, **identity_kwargs(emulator)
    )
    with credential:
        token = credential.get_token(ARM_SCOPE)
    c = assert_service_principal_token(token.token)
    assert abs(token.expires_on - c["exp"]) <= 5


def test_client_secret_credential_rejects_a_wrong_secret(emulator):
    credential = ClientSecretCredential(
        TENANT_ID, ServicePrincipal.client_id, WRONG_SECRET, **identity_kwargs(emulator)
    )
    with credential, pytest.raises(ClientAuthenticationError) as failure:
        credential.get_token(ARM_SCOPE)
    assert "AADSTS7000215" in str(failure.value)


def test_async_client_secret_credential(emulator):
    async def run():
        async with AsyncClientSecretCredential(
            TENANT_ID,
            ServicePrincipal.client_id,
            ServicePrincipal.secret,
            **identity_kwargs(emulator),
        ) as credential:
            return await credential.get_token(ARM_SCOPE)

    token = asyncio.run(run())
    assert_service_principal_token(token.token)


@pytest.mark.parametrize("send_certificate_chain", [False, True])
def test_certificate_credential(emulator, send_certificate_chain):
    pem = (
        ServicePrincipal.private_key_file.read_bytes()
        + ServicePrincipal.certificate_file.read_bytes()
    )
    credential = CertificateCredential(
        TENANT_ID,
        ServicePrincipal.client_id,
        certificate_data=pem,
        send_certificate_chain=send_certificate_chain,
        **identity_kwargs(emulator),
    )
    with credential:
        token = credential.get_token(ARM_SCOPE)
    assert_service_principal_token(token.token)
