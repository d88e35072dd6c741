"""What ACM holds and accepts: key types, serials, the leaf/chain split, pre-import checks."""

from __future__ import annotations

from certman.errors import ValidationError
from certman.models import KeyType

# ListCertificates returns only RSA-2048 certificates unless asked for every key type.
KEY_TYPES = [
    "RSA_1024",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "EC_prime256v1",
    "EC_secp384r1",
    "EC_secp521r1",
]
# ACM's KeyAlgorithm for each key type certman issues.
ACM_KEY_ALGORITHMS = {
    KeyType.EC_P256: "EC_prime256v1",
    KeyType.EC_P384: "EC_secp384r1",
    KeyType.RSA_2048: "RSA_2048",
    KeyType.RSA_3072: "RSA_3072",
    KeyType.RSA_4096: "RSA_4096",
}
TAG_NAME = "certman:name"
TAG_REVISION = "certman:revision"


def acm_serial(value: str) -> str:
    """A serial as certman writes it (bare lowercase hex) from what ACM reports.

    ACM writes colon-separated hex bytes ("0a:1b:..."); moto writes the decimal integer.
    """
    value = value.strip()
    if not value:
        return ""
    if ":" not in value and value.isdigit():
        return format(int(value), "x")
    return value.replace(":", "").lower().lstrip("0") or "0"


def split_for_acm(certificate_pem: bytes, chain_pem: bytes) -> tuple[bytes, bytes]:
    """(leaf, chain) as ImportCertificate wants them: the leaf alone, then its issuers.

    Accepts a full chain in ``certificate_pem`` and a chain that repeats the leaf; keeps
    the order given and drops duplicates.
    """
    from certman.pki import split_pem_chain

    certificates = split_pem_chain(certificate_pem)
    if not certificates:
        raise ValidationError("The certificate is empty; nothing to import into ACM.")
    leaf, chain = certificates[0], []
    for pem in [*certificates[1:], *split_pem_chain(chain_pem)]:
        if pem != leaf and pem not in chain:
            chain.append(pem)
    return leaf, b"".join(chain)


def check_bundle(certificate_pem: bytes, chain_pem: bytes, private_key_pem: bytes) -> None:
    """What ACM refuses (moto does not): a key for another certificate, a broken chain.

    ``certificate_pem`` is the leaf alone and ``chain_pem`` its issuers, leaf first order
    (split_for_acm). Checked before anything is sent, so nothing is imported on a mismatch.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from certman.pki import load_certificate, public_key_der, split_pem_chain

    leaf = load_certificate(certificate_pem)
    try:
        key = load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError):
        raise ValidationError(
            "The private key is not an unencrypted PEM key; not imported."
        ) from None
    if public_key_der(key.public_key()) != public_key_der(leaf.public_key()):
        raise ValidationError("The private key does not belong to the certificate; not imported.")
    child = leaf
    for pem in split_pem_chain(chain_pem):
        parent = load_certificate(pem)
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as e:
            raise ValidationError(
                f"The chain does not link: {child.subject.rfc4514_string()} was not issued by "
                f"{parent.subject.rfc4514_string()} ({type(e).__name__}); not imported."
            ) from None
        child = parent


def key_types_of(leaf: bytes) -> list[str]:
    """ACM's key type of the leaf, to filter ListCertificates by (every type if unknown)."""
    from certman.pki import key_type_of, load_certificate

    try:
        return [ACM_KEY_ALGORITHMS[key_type_of(load_certificate(leaf).public_key())]]
    except ValidationError:  # a key type certman does not issue (an imported leaf)
        return KEY_TYPES


def names_of(leaf: bytes) -> set[str]:
    """The names ACM may list a certificate under (its DomainName: CN or first SAN)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from certman.pki import load_certificate

    certificate = load_certificate(leaf)
    names = {str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    names |= {str(v) for v in san.get_values_for_type(x509.DNSName)}
    names |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    return names
