"""How a connection's settings (credentials, TLS PEMs, operator extras) become librdkafka
settings, checked by librdkafka itself (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# librdkafka validates the settings when a client is created (application code never imports
# the client: brokers/ only).
from confluent_kafka import Consumer  # noqa: TID251

from brokers.base import ConnectionConfig, TLSOptions
from brokers.kafka.client import ErrorLog, client_config
from tests.support.kafka import BOOTSTRAP


def self_signed() -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dlqadmin-test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def test_credentials_and_tls_pems_become_librdkafka_settings():
    cert_pem, key_pem = self_signed()
    cfg = ConnectionConfig(
        kind="kafka",
        url="kafka://broker-1:9093, broker-2:9093/",
        username="svc",
        password="secret",
        tls=TLSOptions(
            enabled=True, verify=False, ca_pem=cert_pem, client_cert_pem=cert_pem, client_key_pem=key_pem
        ),
        options={
            "sasl_mechanism": "SCRAM-SHA-512",
            "client": {"fetch.wait.max.ms": 100, "enable.auto.commit": True},
        },
    )
    conf = client_config(cfg, ErrorLog(), **{"group.id": "g", "enable.auto.commit": False})
    assert conf["bootstrap.servers"] == "broker-1:9093,broker-2:9093"
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("svc", "secret")
    assert conf["ssl.ca.pem"] == cert_pem and conf["ssl.key.pem"] == key_pem
    assert conf["enable.ssl.certificate.verification"] is False
    assert conf["fetch.wait.max.ms"] == 100  # operator extras apply ...
    assert conf["enable.auto.commit"] is False  # ... but never over what correctness needs
    # librdkafka validates every setting and parses the PEMs when the client is created
    Consumer(conf).close()
    plain = client_config(ConnectionConfig(kind="kafka", url=BOOTSTRAP), ErrorLog())
    assert plain["security.protocol"] == "PLAINTEXT" and "sasl.username" not in plain
