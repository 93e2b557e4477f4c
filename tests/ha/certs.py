"""Certificates for the TLS tests, made in the test run with ``cryptography``.

A CA; a server certificate for 127.0.0.1 (IP SAN) and localhost, also usable as a
client certificate (a server presents its ``tls-cert-file`` when it connects out:
replication, the cluster bus, Sentinel); a client certificate; and a second CA with
a client certificate of its own, which the servers must refuse. EC P-256 keys
(milliseconds to make), valid from an hour ago for a day. Authority and subject
key identifiers are set: Python 3.13's default context verifies with
``VERIFY_X509_STRICT``, which requires them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Certs", "make_certs"]


@dataclass(frozen=True)
class Certs:
    """Paths of PEM files."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str  #: a CA nothing trusts
    other_client_cert: str  #: a client certificate signed by ``other_ca``
    other_client_key: str


def make_certs(directory: str) -> Certs:
    ca_key, ca = _ca("gatekeep test CA")
    other_key, other = _ca("gatekeep other CA")
    server_key, server = _leaf(
        "127.0.0.1",
        ca_key,
        ca,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client_key, client = _leaf("gatekeep-client", ca_key, ca, [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    stranger_key, stranger = _leaf(
        "gatekeep-stranger", other_key, other, [ExtendedKeyUsageOID.CLIENT_AUTH], []
    )
    paths = {
        "ca": _write(directory, "ca.crt", ca),
        "server_cert": _write(directory, "server.crt", server),
        "server_key": _write(directory, "server.key", server_key),
        "client_cert": _write(directory, "client.crt", client),
        "client_key": _write(directory, "client.key", client_key),
        "other_ca": _write(directory, "other-ca.crt", other),
        "other_client_cert": _write(directory, "other-client.crt", stranger),
        "other_client_key": _write(directory, "other-client.key", stranger_key),
    }
    return Certs(**paths)


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(
        now + datetime.timedelta(days=1)
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gatekeep tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    builder = (
        _validity(x509.CertificateBuilder())
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return key, builder.sign(key, hashes.SHA256())


def _leaf(
    common_name: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    usages: list[x509.ObjectIdentifier],
    names: list[x509.GeneralName],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _validity(x509.CertificateBuilder())
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _write(directory: str, name: str, item: x509.Certificate | ec.EllipticCurvePrivateKey) -> str:
    path = os.path.join(directory, name)
    if isinstance(item, x509.Certificate):
        data = item.public_bytes(serialization.Encoding.PEM)
    else:
        data = item.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    with open(path, "wb") as f:
        f.write(data)
    return path
