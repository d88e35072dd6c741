"""Every contract between certman's core and its backends, one module per concept.

issuer (private CA, ACME), key_wrapper (local master key, KMS, PKCS#11), archive (local
directory, S3), deployer (ACM, ELBv2 listeners, files + reload). Each backend operation
takes one request dataclass and returns one response dataclass; optional capabilities are
separate small protocols, asked with ``supports``.
"""

from __future__ import annotations


def supports(backend: object, capability: type) -> bool:
    """``isinstance(backend, capability)`` for a capability protocol, answered once per class.

    A runtime protocol check walks the protocol's members on every call (~10 us), and the
    lifecycle asks it for each certificate; capabilities are methods a backend's class
    defines, so the answer depends on the class alone.
    """
    key = (type(backend), capability)
    found = _CLASS_SUPPORTS.get(key)
    if found is None:
        found = _CLASS_SUPPORTS[key] = issubclass(key[0], capability)
    return found


_CLASS_SUPPORTS: dict[tuple[type, type], bool] = {}
