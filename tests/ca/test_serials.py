"""Serial numbers per CA/Browser Forum BR 7.1 and RFC 5280 4.1.2.2."""

from __future__ import annotations

from certman.ca.serials import new_serial


def test_serials_are_unique_over_ten_thousand_draws() -> None:
    serials = [new_serial() for _ in range(10_000)]
    assert len(set(serials)) == len(serials)


def test_serial_is_positive_and_below_2_pow_159() -> None:
    for _ in range(1_000):
        serial = new_serial()
        assert 0 < serial < 2**159


def test_serial_has_at_least_64_bits_of_entropy() -> None:
    serials = [new_serial() for _ in range(10_000)]
    # Every one of the 159 bit positions takes both values, and the top 64 bits alone
    # never repeat: far more than 64 random bits are in play.
    for bit in range(159):
        ones = sum((s >> bit) & 1 for s in serials)
        assert 4_000 < ones < 6_000, f"bit {bit} is biased"
    assert len({s >> 95 for s in serials}) == len(serials)
    assert max(s.bit_length() for s in serials) == 159
