"""The spelled-out encoders write exactly what CANONICAL_JSON writes for the same values.

Sealed keys and bundles already stored were written by CANONICAL_JSON; the faster,
spelled-out encoders must not change a byte (stored hashes and rewrap comparisons rely on it).
"""

from __future__ import annotations

import os

import pytest

from certman.archive import bundle as bundle_module
from certman.archive.bundle import Bundle
from certman.models import CANONICAL_JSON, WrappedKey, canonical_text_map

_AWKWARD = 'k"ey\\id/é\u2603\n\t\x00'


def _wrapped(**changes: object) -> WrappedKey:
    values: dict[str, object] = dict(
        wrapper="local",
        key_id="local:3",
        algorithm="AES-256-GCM",
        encrypted_data_key=os.urandom(60),
        nonce=os.urandom(12),
        ciphertext=os.urandom(150),
        version=1,
        extra={},
    )
    values.update(changes)
    return WrappedKey(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"extra": {"fp": "ab12", "z": "last", "a": "first"}},
        {"key_id": _AWKWARD, "wrapper": _AWKWARD, "extra": {_AWKWARD: _AWKWARD}},
        {"ciphertext": b"", "encrypted_data_key": b"\x00" * 7, "version": 12},
    ],
)
def test_wrapped_key_json_is_canonical_json_of_its_dict(changes: dict[str, object]) -> None:
    wrapped = _wrapped(**changes)
    assert wrapped.to_json() == CANONICAL_JSON.encode(wrapped.to_dict())
    assert wrapped.to_json(ciphertext=False) == CANONICAL_JSON.encode(
        wrapped.to_dict(ciphertext=False)
    )
    assert WrappedKey.from_json(wrapped.to_json()) == wrapped


@pytest.mark.parametrize("name", ["web", _AWKWARD.replace("/", "-")])
def test_bundle_body_and_header_are_canonical_json(name: str) -> None:
    sealed_key = _wrapped(extra={"fp": "00ff"})
    bundle = Bundle(
        name=name,
        revision=1234567,
        certificate_pem=b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        chain_pem=b"",
        sealed_key=sealed_key,
        metadata={"serial": "1f", _AWKWARD: "x", "a": _AWKWARD},
    )
    body = bundle_module._encode_body(bundle)
    assert (
        body
        == CANONICAL_JSON.encode(
            {
                "name": name,
                "revision": 1234567,
                "certificate_pem": bundle.certificate_pem.decode(),
                "chain_pem": "",
                "sealed_key": sealed_key.to_dict(),
                "metadata": dict(bundle.metadata),
            }
        ).encode()
    )
    sealed_body = _wrapped()
    line, _, rest = bundle_module._encode(name, 7, sealed_body).partition(b"\n")
    assert (
        line
        == CANONICAL_JSON.encode(
            {
                "format": "certman-bundle",
                "v": 1,
                "name": name,
                "revision": 7,
                "sealed": sealed_body.to_dict(ciphertext=False),
            }
        ).encode()
    )
    assert rest == sealed_body.ciphertext


@pytest.mark.parametrize(
    "values",
    [{}, {"b": "2", "a": "1"}, {_AWKWARD: _AWKWARD, "Z": "", "a": "é"}, {"n": 1, "s": "x"}],
)
def test_text_maps_are_spelled_as_canonical_json(values: dict[str, object]) -> None:
    assert canonical_text_map(values) == CANONICAL_JSON.encode(values)  # type: ignore[arg-type]
