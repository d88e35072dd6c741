"""Small EC certificate chains for the ACM tests (EC: RSA key loads cost ~40 ms each)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certman.contracts.deployer import DeployRequest, Material


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class TestCA:
    """A root and an intermediate; ``leaf()`` issues under the intermediate."""

    __test__ = False  # not a pytest class

    root_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    inter_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def __post_init__(self) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test root")])
        inter_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test intermediate")])
        ca = x509.BasicConstraints(ca=True, path_length=None)
        self.root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(self.root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(ca, critical=True)
            .sign(self.root_key, hashes.SHA256())
        )
        self.intermediate = (
            x509.CertificateBuilder()
            .subject_name(inter_name)
            .issuer_name(root_name)
            .public_key(self.inter_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1825))
            .add_extension(ca, critical=True)
            .sign(self.root_key, hashes.SHA256())
        )

    @property
    def chain_pem(self) -> bytes:
        return self.intermediate.public_bytes(serialization.Encoding.PEM)

    @property
    def full_chain_pem(self) -> bytes:
        return self.chain_pem + self.root.public_bytes(serialization.Encoding.PEM)

    def leaf(self, name: str = "www.example.com", days: int = 30) -> Leaf:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC).replace(microsecond=0)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(self.inter_key, hashes.SHA256())
        )
        return Leaf(
            certificate=cert,
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM),
            chain_pem=self.chain_pem,
            key_pem=_pem_key(key),
        )


@dataclass
class Leaf:
    certificate: x509.Certificate
    certificate_pem: bytes
    chain_pem: bytes
    key_pem: bytes = field(repr=False)

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "x")

    def request(self, name: str = "web", revision: int = 1, **kwargs: object) -> DeployRequest:
        fields: dict[str, object] = {
            "certificate_pem": self.certificate_pem,
            "chain_pem": self.chain_pem,
            "private_key_pem": self.key_pem,
            **kwargs,
        }
        return DeployRequest(name=name, revision=revision, **fields)  # type: ignore[arg-type]

    def material(self, revision: int) -> Material:
        return Material(
            revision=revision,
            certificate_pem=self.certificate_pem,
            chain_pem=self.chain_pem,
            private_key_pem=self.key_pem,
        )


def other_key_pem() -> bytes:
    return _pem_key(ec.generate_private_key(ec.SECP256R1()))
