"""Identifier names: DNS names with IDNA and wildcards, IP addresses."""

from __future__ import annotations

import re

import pytest

from certman.domains import name_within, normalize_name, normalize_names
from certman.errors import ValidationError


def test_dns_names_are_lowercased_and_lose_the_trailing_dot() -> None:
    assert normalize_name("WWW.Example.COM.").value == "www.example.com"


def test_internationalised_names_become_their_a_label() -> None:
    assert normalize_name("bücher.example").value == "xn--bcher-kva.example"


def test_uppercase_internationalised_names_become_the_same_a_label() -> None:
    assert normalize_name("BÜCHER.example").value == "xn--bcher-kva.example"


def test_a_labels_are_kept_as_given() -> None:
    assert normalize_name("xn--bcher-kva.example").value == "xn--bcher-kva.example"


def test_duplicates_are_refused_after_idna_normalisation() -> None:
    with pytest.raises(ValidationError, match="given twice"):
        normalize_names(["bücher.example", "xn--bcher-kva.example"])


def test_duplicates_are_refused_after_case_and_dot_normalisation() -> None:
    with pytest.raises(ValidationError, match=re.escape("'Example.com.' is given twice")):
        normalize_names(["example.com", "Example.com."])


def test_duplicate_ip_addresses_are_refused_after_normalisation() -> None:
    with pytest.raises(ValidationError, match="given twice"):
        normalize_names(["2001:db8::1", "2001:DB8:0:0::0001"])


def test_an_empty_list_of_names_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least one name"):
        normalize_names([])


def test_normalize_names_keeps_the_order_given() -> None:
    names = normalize_names(["b.example.com", "a.example.com", "192.0.2.1"])
    assert [n.value for n in names] == ["b.example.com", "a.example.com", "192.0.2.1"]


def test_a_wildcard_as_the_whole_left_most_label_is_accepted() -> None:
    ident = normalize_name("*.Example.com")
    assert ident.value == "*.example.com"
    assert ident.is_wildcard


def test_a_wildcard_on_an_internationalised_name_keeps_the_star() -> None:
    assert normalize_name("*.bücher.example").value == "*.xn--bcher-kva.example"


@pytest.mark.parametrize(
    "text", ["www.*.example.com", "w*.example.com", "*w.example.com", "*.*.example.com", "**.a.b"]
)
def test_a_wildcard_that_is_not_the_whole_left_most_label_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match=r"wildcard|not a valid DNS name"):
        normalize_name(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.10", "192.0.2.10"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        (" ::1 ", "::1"),
    ],
)
def test_ip_addresses_are_normalised(text: str, expected: str) -> None:
    ident = normalize_name(text)
    assert ident.is_ip
    assert ident.value == expected


@pytest.mark.parametrize(
    "text",
    [
        "exa mple.com",
        "-bad.example.com",
        "bad-.example.com",
        "under_score.example.com",
        "localhost",
        "a..example.com",
        "a" * 64 + ".example.com",
        ".".join(["a" * 60] * 5),  # 304 characters, over 253
        "192.168.001.1",  # leading zeros: neither an IP address nor a DNS name
        "example.123",
        "http://example.com",
    ],
)
def test_invalid_dns_names_are_refused_naming_the_input(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        normalize_name(text)
    assert repr(text) in info.value.message


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_name_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="empty"):
        normalize_name(text)


@pytest.mark.parametrize(
    ("name", "domain", "within"),
    [
        ("example.com", "example.com", True),
        ("www.example.com", "example.com", True),
        ("*.example.com", "example.com", True),
        ("a.b.example.com", "Example.COM.", True),
        ("evil.com", "example.com", False),
        ("notexample.com", "example.com", False),
        ("example.com.evil.com", "example.com", False),
    ],
)
def test_name_within_checks_label_boundaries(name: str, domain: str, within: bool) -> None:
    assert name_within(name, domain) is within


# --- IDNA2008 (UTS 46, non-transitional) ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("faß.example", "xn--fa-hia.example", id="sharp-s-is-kept"),
        pytest.param("straße.de", "xn--strae-oqa.de", id="sharp-s-in-a-word"),
        pytest.param(
            "\uff37\uff37\uff37\uff0ebücher.example", "www.xn--bcher-kva.example", id="full-width"
        ),
        pytest.param("www。bücher.example", "www.xn--bcher-kva.example", id="ideographic-dot"),
    ],
)
def test_internationalised_names_follow_uts46_non_transitional(text: str, expected: str) -> None:
    assert normalize_name(text).value == expected


def test_a_sharp_s_name_is_not_the_ss_name() -> None:
    """IDNA2003 mapped faß to fass: a certificate for another domain than asked."""
    assert normalize_name("faß.example").value != normalize_name("fass.example").value
    assert len(normalize_names(["faß.example", "fass.example"])) == 2


@pytest.mark.parametrize(
    "text", ["☃.example", "a\u200db.example", "\u0301a.example"], ids=["symbol", "zwj", "mark"]
)
def test_names_idna2008_disallows_are_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="not a valid internationalised name"):
        normalize_name(text)


@pytest.mark.parametrize(
    "text",
    [
        "xn--zz.example",  # not punycode
        "xn--a.example",  # decodes to a control character
        "www.xn--abc-.example",  # an all-ASCII "A-label"
        "xn--mi7ccd.example",  # full-width letters, which IDNA2008 disallows
    ],
)
def test_xn_labels_that_do_not_decode_are_refused(text: str) -> None:
    label = next(part for part in text.lower().split(".") if part.startswith("xn--"))
    with pytest.raises(ValidationError, match=re.escape(f"label {label!r}")):
        normalize_name(text)


def test_a_valid_xn_label_is_accepted_and_equals_its_unicode_form() -> None:
    assert normalize_name("xn--55qx5d.example").value == normalize_name("公司.example").value


@pytest.mark.parametrize("text", ["fe80::1%eth0", "[fe80::1%25]", "fe80::1%1"])
def test_a_scoped_ipv6_address_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="zone index") as refused:
        normalize_name(text)
    assert "fe80::1" in str(refused.value)


def test_a_wildcard_name_of_253_characters_is_accepted_and_of_254_refused() -> None:
    body = ".".join(["a" * 63] * 3) + "."
    fits = "*." + body + "b" * (253 - 2 - len(body))
    assert len(fits) == 253 and normalize_name(fits).value == fits
    with pytest.raises(ValidationError, match="not a valid DNS name"):
        normalize_name(fits[:-1] + "bb")


@pytest.mark.parametrize("text", ["[::1", "::1]", "[[::1]]", "[192.0.2.1", "www.example.com]"])
def test_an_unmatched_bracket_is_refused_not_dropped(text: str) -> None:
    with pytest.raises(ValidationError, match="unmatched bracket"):
        normalize_name(text)


def test_an_ipv6_address_in_brackets_is_accepted() -> None:
    assert normalize_name("[2001:db8::1]") == normalize_name("2001:db8::1")


@pytest.mark.parametrize(
    ("text", "named", "becomes"),
    [
        pytest.param("a\u00adb.example", "U+00AD SOFT HYPHEN", "'ab.example'", id="soft-hyphen"),
        pytest.param(
            "a\u200bb.example", "U+200B ZERO WIDTH SPACE", "'ab.example'", id="zero-width-space"
        ),
        pytest.param(
            "b\u00fccher\u00ad.example", "U+00AD SOFT HYPHEN", "'bücher.example'", id="with-idn"
        ),
    ],
)
def test_a_character_idna_mapping_removes_is_refused_naming_it(
    text: str, named: str, becomes: str
) -> None:
    """UTS 46 maps these to nothing: the certificate would be for another name than given."""
    with pytest.raises(ValidationError) as info:
        normalize_name(text)
    assert named in info.value.message and f"it would become {becomes}" in info.value.message
