"""Certificate serial numbers: positive, non-zero, 159 bits from a CSPRNG."""

from __future__ import annotations

import secrets

# CA/Browser Forum BR 7.1: serials are non-sequential, greater than zero, less than 2^159
# and contain at least 64 bits of CSPRNG output. RFC 5280 4.1.2.2 caps them at 20 octets;
# 159 bits keeps the DER INTEGER positive within those 20 octets.
SERIAL_BITS = 159


def new_serial() -> int:
    """A fresh random serial number in [1, 2^159)."""
    while True:
        serial = secrets.randbits(SERIAL_BITS)
        if serial:
            return serial
