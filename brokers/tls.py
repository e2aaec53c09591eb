"""Client TLS contexts from the PEM text a connection stores, shared by the adapters that build
their own (RabbitMQ, NATS; librdkafka reads the PEMs itself)."""

from __future__ import annotations

import os
import ssl
import tempfile

from .base import BrokerError, TLSOptions


def tls_context(tls: TLSOptions) -> ssl.SSLContext:
    """CA bundle, optional client certificate + key, verify flag. PEM text that cannot be read
    is a permanent BrokerError naming the part (retrying cannot fix a certificate)."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=tls.ca_pem or None)
    except (ssl.SSLError, ValueError) as exc:
        raise BrokerError(f"the TLS CA certificate could not be read: {exc}", permanent=True) from exc
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert_pem:
        # load_cert_chain only reads files: write the PEMs to a private temp dir, then remove it.
        with tempfile.TemporaryDirectory(prefix="dlqadmin-tls-") as tmp:
            cert = os.path.join(tmp, "cert.pem")
            key = os.path.join(tmp, "key.pem") if tls.client_key_pem else None
            for path, pem in ((cert, tls.client_cert_pem), (key, tls.client_key_pem)):
                if path:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w") as fh:
                        fh.write(pem)
            try:
                context.load_cert_chain(cert, key)
            except (ssl.SSLError, ValueError) as exc:
                raise BrokerError(
                    f"the TLS client certificate or key could not be read: {exc}", permanent=True
                ) from exc
    return context
