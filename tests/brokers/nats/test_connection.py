"""NATS connections: unreachable servers and a later URL, TLS with client certificates and a
password (a private server), and the package importing the real nats client."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from brokers import get_adapter
from brokers.base import BrokerError, ConnectionConfig, TLSOptions
from tests.brokers import nats_server
from tests.brokers.contract import run
from tests.support.nats import NATS_URL, config


def test_unreachable_servers_fail_fast_and_a_later_url_is_tried():
    async def go():
        started = time.monotonic()
        async with get_adapter(config("nats://127.0.0.1:1, nats://127.0.0.1:2")) as adapter:
            with pytest.raises(BrokerError) as err:
                await adapter.discover()
        elapsed = time.monotonic() - started
        async with get_adapter(config(f"nats://127.0.0.1:1,{NATS_URL}")) as adapter:
            health = await adapter.health()
        return err.value, elapsed, health

    err, elapsed, health = run(go())
    assert not err.permanent and "cannot connect" in str(err) and elapsed < 5
    assert health.ok and health.server_version


def _pki(directory) -> dict[str, str]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def pem_key(key) -> str:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def build(subject: str, key, issuer_key, issuer: x509.Name, extensions) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
        )
        for ext, critical in extensions:
            builder = builder.add_extension(ext, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build(
        "dlqadmin test CA",
        ca_key,
        ca_key,
        name("dlqadmin test CA"),
        [
            (x509.BasicConstraints(ca=True, path_length=None), True),
        ],
    )
    out = {"ca": ca.public_bytes(serialization.Encoding.PEM).decode()}
    for who, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build(
            who,
            key,
            ca_key,
            ca.subject,
            [
                (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
                (x509.ExtendedKeyUsage([usage]), False),
            ],
        )
        out[who] = cert.public_bytes(serialization.Encoding.PEM).decode()
        out[f"{who}_key"] = pem_key(key)
    for label, text in out.items():
        (directory / f"{label}.pem").write_text(text)
    return out


@pytest.fixture(scope="module")
def tls_nats(tmp_path_factory):
    """A private server requiring TLS with client certificates, and a user/password."""
    directory = tmp_path_factory.mktemp("nats-tls")
    pki = _pki(directory)
    server = nats_server.start(
        f"""tls {{
  cert_file: "{directory / "server.pem"}"
  key_file: "{directory / "server_key.pem"}"
  ca_file: "{directory / "ca.pem"}"
  verify: true
}}
authorization {{ user: "dlq", password: "s3cret" }}
"""
    )
    yield server, pki
    server.stop()


def test_tls_with_client_certificate_and_password(tls_nats):
    server, pki = tls_nats
    tls = TLSOptions(
        enabled=True, ca_pem=pki["ca"], client_cert_pem=pki["client"], client_key_pem=pki["client_key"]
    )

    def cfg(password: str = "s3cret", tls: TLSOptions = tls) -> ConnectionConfig:
        return ConnectionConfig(
            kind="nats", url=server.url, username="dlq", password=password, tls=tls, timeout=3
        )

    async def go():
        async with get_adapter(cfg()) as adapter:
            health = await adapter.health()
            found = await adapter.discover()
        errors = []
        for bad in (cfg(password="wrong"), cfg(tls=TLSOptions(enabled=True))):
            async with get_adapter(bad) as adapter:
                with pytest.raises(BrokerError) as err:
                    await adapter.discover()
                errors.append(err.value)
        return health, found, errors

    health, found, (bad_password, untrusted) = run(go())
    assert health.ok and health.server_version.startswith("2.") and found == []
    assert bad_password.permanent and "cannot connect" in str(bad_password)
    assert untrusted.permanent and "certificate" in str(untrusted).lower()


def test_the_package_imports_the_nats_client_not_itself():
    code = "import brokers.nats as ours, nats; from nats.aio.client import Client; print(nats.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "site-packages" in out.stdout and "brokers" not in out.stdout
