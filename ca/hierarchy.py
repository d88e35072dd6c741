"""A two-level CA hierarchy: a self-signed root and one name-constrained issuing intermediate."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from certman.ca.keys import PrivateKey, generate_private_key, key_type_of, signature_hash_for
from certman.ca.policy import SigningPolicy
from certman.ca.serials import new_serial
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certman.clock import utc
from certman.durations import format_duration
from certman.errors import ValidationError
from certman.models import KeyType

# Clock skew between us and relying parties: certificates start one hour in the past.
BACKDATE = timedelta(hours=1)
ORGANIZATION = "certman"
# RFC 5280 appendix A.1: ub-common-name is 64 characters.
MAX_COMMON_NAME = 64
_ROOT_SUFFIX = " Root"
_INTERMEDIATE_SUFFIX = " Intermediate"


@dataclass(frozen=True, kw_only=True)
class CAHierarchy:
    """The certificates and keys of one CA; callers seal both keys at once."""

    name: str
    root_certificate: x509.Certificate
    intermediate_certificate: x509.Certificate
    root_key: PrivateKey = field(repr=False)
    intermediate_key: PrivateKey = field(repr=False)


def create_hierarchy(
    *,
    name: str,
    common_name: str,
    key_type: KeyType,
    policy: SigningPolicy,
    now: datetime,
    root_validity: timedelta = timedelta(days=3650),
    intermediate_validity: timedelta = timedelta(days=1825),
    keys: tuple[PrivateKey, PrivateKey] | None = None,
) -> CAHierarchy:
    """The root and intermediate certificates for CA ``name``, and their keys.

    ``keys`` (root, intermediate) are keys made elsewhere, e.g. in an HSM that never lets
    them out; without it both are generated here.
    """
    common_name = common_name.strip()
    if not common_name:
        raise ValidationError("common_name is empty; give the CA a name like 'Example Corp'.")
    longest = len(common_name) + len(_INTERMEDIATE_SUFFIX)
    if longest > MAX_COMMON_NAME:
        raise ValidationError(
            f"common_name {common_name!r} is too long; keep it under "
            f"{MAX_COMMON_NAME - len(_INTERMEDIATE_SUFFIX) + 1} characters."
        )
    if root_validity <= timedelta(0) or intermediate_validity <= timedelta(0):
        raise ValidationError("root_validity and intermediate_validity must be longer than zero.")
    if intermediate_validity > root_validity:
        raise ValidationError(
            f"intermediate_validity {format_duration(intermediate_validity)} exceeds "
            f"root_validity {format_duration(root_validity)}; an intermediate cannot outlive "
            "its root."
        )
    key_type = KeyType.parse(key_type)
    now = utc(now).replace(microsecond=0)

    if keys is not None and any(key_type_of(k) is not key_type for k in keys):
        raise ValidationError(f"The CA keys given are not {key_type.value} keys.")
    root_key = keys[0] if keys is not None else generate_private_key(key_type)
    root_name = _ca_name(common_name + _ROOT_SUFFIX)
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(new_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + root_validity)
        # RFC 5280 4.2.1.9: no path length on the root, so it can add intermediates later.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=False), critical=True)
        .add_extension(root_ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
            critical=False,
        )
        .sign(root_key, signature_hash_for(root_key))
    )

    intermediate_key = keys[1] if keys is not None else generate_private_key(key_type)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_ca_name(common_name + _INTERMEDIATE_SUFFIX))
        .issuer_name(root_name)
        .public_key(intermediate_key.public_key())
        .serial_number(new_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + intermediate_validity)
        # pathlen 0: the intermediate signs leaves only (RFC 5280 4.2.1.9).
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(intermediate_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
            critical=False,
        )
        .add_extension(_extended_key_usage(policy), critical=False)
    )
    constraints = name_constraints(policy)
    if constraints is not None:
        builder = builder.add_extension(constraints, critical=True)
    intermediate = builder.sign(root_key, signature_hash_for(root_key))

    return CAHierarchy(
        name=name,
        root_certificate=root,
        intermediate_certificate=intermediate,
        root_key=root_key,
        intermediate_key=intermediate_key,
    )


def name_constraints(policy: SigningPolicy) -> x509.NameConstraints | None:
    """The intermediate's name constraints (RFC 5280 4.2.1.10), or None when unconstrained.

    A DNS subtree ``example.com`` covers the name itself and every name below it. When
    IP addresses are not allowed, BR 7.1.2.5.2 asks to exclude the whole IPv4 and IPv6
    ranges, since a constraint on DNS names alone leaves IP addresses unconstrained.
    """
    if not policy.permitted_domains:
        return None
    permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in policy.permitted_domains]
    excluded: list[x509.GeneralName] | None = None
    if not policy.allow_ip:
        excluded = [
            x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
            x509.IPAddress(ipaddress.ip_network("::/0")),
        ]
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded)


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, digital_signature: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _extended_key_usage(policy: SigningPolicy) -> x509.ExtendedKeyUsage:
    usages = [ExtendedKeyUsageOID.SERVER_AUTH]
    if policy.client_auth:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    return x509.ExtendedKeyUsage(usages)
