"""Identifier names: DNS names (IDNA, wildcards) and IP addresses, normalised and checked."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

from certman.errors import ValidationError

# RFC 1035 section 2.3.1 (letters, digits, hyphen), applied after IDNA encoding.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_IPV4_CHARS = frozenset("0123456789.")


@dataclass(frozen=True, kw_only=True)
class Identifier:
    """One name of a certificate: ``value`` is the ASCII (A-label) form or an IP address."""

    value: str
    is_ip: bool = False

    @property
    def is_wildcard(self) -> bool:
        return self.value.startswith("*.")


def is_ip_address(value: str) -> bool:
    """True for an IPv4 or IPv6 address literal (as an identifier or a server name)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def normalize_name(text: str) -> Identifier:
    """Return the canonical identifier for ``text`` or raise ValidationError naming it."""
    return _normalized(str(text))


# A pure function of the text, asked three times per name on the way to a certificate (the
# operator's input, the CA's precheck, the CA's signing policy): answered once. Refusals
# raise, so they are never cached.
@lru_cache(maxsize=16384)
def _normalized(text: str) -> Identifier:
    raw = text.strip()
    if not raw:
        raise ValidationError("A domain name is empty; give names like example.com.")
    # RFC 3986 3.2.2: an IPv6 literal may come in brackets, both of them; one alone is a typo.
    literal = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
    if "[" in literal or "]" in literal:
        raise ValidationError(
            f"Name {text!r} has an unmatched bracket; give an IPv6 address as 2001:db8::1 "
            "or [2001:db8::1], or a DNS name without brackets."
        )
    # Only a text with a colon (IPv6) or of digits and dots (IPv4) can be an address; asking
    # ipaddress about every DNS name costs two exceptions each.
    if ":" in literal or _IPV4_CHARS.issuperset(literal):
        try:
            ip = ipaddress.ip_address(literal)
        except ValueError:
            pass
        else:
            if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
                # RFC 5280 4.2.1.6: an iPAddress is 16 octets; a zone index is local to one host.
                bare = ipaddress.IPv6Address(int(ip)).compressed
                raise ValidationError(
                    f"IP address {text!r} has a zone index (%{ip.scope_id}), which only means "
                    f"something on this host; give the address without it ({bare})."
                )
            return Identifier(value=ip.compressed, is_ip=True)
    name = raw.rstrip(".").lower()
    wildcard = name.startswith("*.")
    body = name[2:] if wildcard else name
    if "*" in body:
        raise ValidationError(
            f"Domain {text!r} has a wildcard that is not the whole left-most label; "
            "only names like *.example.com are allowed."
        )
    ascii_body = body if body.isascii() else _to_a_labels(body, text)
    labels = ascii_body.split(".")
    for label in labels:
        if label.startswith("xn--"):
            _check_a_label(label, text)
    if (
        len(labels) < 2
        or any(not _LABEL.fullmatch(label) for label in labels)
        # RFC 1035 2.3.4: at most 253 characters as text, the "*." of a wildcard included.
        or len(ascii_body) + (2 if wildcard else 0) > 253
    ):
        raise ValidationError(
            f"Domain {text!r} is not a valid DNS name; use letters, digits and hyphens in "
            "dot-separated labels, for example www.example.com."
        )
    if labels[-1].isdigit():
        raise ValidationError(f"Domain {text!r} ends in a numeric label; DNS names cannot.")
    return Identifier(value=("*." if wildcard else "") + ascii_body)


def _to_a_labels(body: str, text: str) -> str:
    """UTS 46 non-transitional processing to IDNA2008 A-labels: ``faß`` stays distinct from
    ``fass`` (IDNA2003 and transitional processing map ß to ss, another domain)."""
    import idna

    _refuse_removed_characters(body, text)
    try:
        return idna.encode(body, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError) as e:
        raise ValidationError(
            f"Domain {text!r} is not a valid internationalised name: {e}."
        ) from None


def _refuse_removed_characters(body: str, text: str) -> None:
    """UTS 46 section 4 step 1 maps "ignored" code points (U+00AD soft hyphen, U+200B zero
    width space, variation selectors) to nothing: the certificate would be for a name that
    looks the same but is not the one given, so say so instead of dropping them.

    Width and case mappings (full-width letters, U+3002 as a dot) change only how a name is
    written and are kept."""
    import unicodedata

    import idna

    removed = []
    for char in dict.fromkeys(c for c in body if not c.isascii()):
        try:
            if idna.uts46_remap(char, std3_rules=False, transitional=False) == "":
                removed.append(char)
        except idna.IDNAError:
            continue  # disallowed: idna.encode refuses it with its own reason
    if removed:
        named = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, '')}".strip() for c in removed)
        kept = "".join(c for c in body if c not in removed)
        raise ValidationError(
            f"Domain {text!r} holds {named}, which IDNA mapping removes without a trace "
            f"(it would become {kept!r}); give the name without it."
        )


def _check_a_label(label: str, text: str) -> None:
    """An ``xn--`` label must be the A-label of a valid IDNA2008 U-label (RFC 5891 5.4)."""
    import idna

    try:
        valid = _to_a_labels(idna.decode(label), text) == label
    except (idna.IDNAError, UnicodeError, ValidationError):
        valid = False
    if not valid:
        raise ValidationError(
            f"Domain {text!r} has the label {label!r}, which is not a valid IDNA A-label; "
            "give the name in Unicode or as its correct xn-- form."
        )


def normalize_names(texts: list[str] | tuple[str, ...]) -> list[Identifier]:
    """Normalise every name, refusing an empty list and duplicates (after normalisation)."""
    if not texts:
        raise ValidationError("Give at least one name with --domain.")
    seen: dict[str, str] = {}
    result = []
    for text in texts:
        ident = normalize_name(text)
        if ident.value in seen:
            raise ValidationError(
                f"Domain {text!r} is given twice (same as {seen[ident.value]!r}); "
                "list each name once."
            )
        seen[ident.value] = text
        result.append(ident)
    return result


def name_within(name: str, domain: str) -> bool:
    """True when ``name`` (a normalised DNS name, maybe wildcard) is ``domain`` or below it."""
    base = name[2:] if name.startswith("*.") else name
    domain = domain.lower().rstrip(".")
    return base == domain or base.endswith("." + domain)
