"""The signing policy of one private CA: which names, key types and lifetimes it certifies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from certman.domains import Identifier, name_within, normalize_name
from certman.durations import format_duration
from certman.errors import PolicyError, ValidationError
from certman.models import KeyType

# CA/Browser Forum BR 6.3.2: subscriber certificates issued after 2020-09-01 live at most
# 398 days; one day less leaves room for the clock-skew backdate of not_before.
DEFAULT_MAX_VALIDITY = timedelta(days=397)

_FIELDS = (
    "max_validity",
    "permitted_domains",
    "allowed_key_types",
    "allow_wildcards",
    "allow_ip",
    "client_auth",
    "crl_url",
)


@dataclass(frozen=True, kw_only=True)
class SigningPolicy:
    """What a CA agrees to sign.

    ``permitted_domains`` empty means any DNS name; otherwise every DNS name must be one
    of them or below one, and the intermediate carries them as name constraints
    (RFC 5280 section 4.2.1.10).
    """

    max_validity: timedelta = DEFAULT_MAX_VALIDITY
    permitted_domains: tuple[str, ...] = ()
    allowed_key_types: tuple[KeyType, ...] = tuple(KeyType)
    allow_wildcards: bool = True
    allow_ip: bool = True
    client_auth: bool = False
    crl_url: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_validity, timedelta):
            raise TypeError("max_validity must be a timedelta.")
        if self.max_validity <= timedelta(0):
            raise ValidationError(
                f"max_validity must be longer than zero (got {format_duration(self.max_validity)})."
            )
        object.__setattr__(self, "permitted_domains", _permitted_domains(self.permitted_domains))
        if isinstance(self.allowed_key_types, str):
            raise TypeError("allowed_key_types must be a sequence of key types, not a string.")
        key_types = tuple(
            KeyType.parse(k, field="allowed key type") for k in self.allowed_key_types
        )
        if not key_types:
            raise ValidationError("allowed_key_types is empty; allow at least one key type.")
        object.__setattr__(self, "allowed_key_types", tuple(dict.fromkeys(key_types)))
        for name in ("allow_wildcards", "allow_ip", "client_auth"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool.")
        if self.crl_url is not None and not str(self.crl_url).startswith(("http://", "https://")):
            # BR 7.1.2.11.2: CRL distribution points are HTTP URLs.
            raise ValidationError(f"crl_url {self.crl_url!r} must be an http:// or https:// URL.")

    def check(
        self,
        identifiers: Sequence[str],
        key_type: KeyType,
        validity: timedelta,
        *,
        ca: str = "this CA",
    ) -> list[Identifier]:
        """Refuse what this policy forbids; return the identifiers in normalised form.

        Raises ValidationError for malformed input and PolicyError for a well-formed
        request that the policy forbids; ``ca`` names the CA in messages.
        """
        if isinstance(identifiers, str):
            raise TypeError("identifiers must be a sequence of names, not a string.")
        if not identifiers:
            raise ValidationError("identifiers is empty; give at least one name to certify.")
        self.check_key_type(key_type, ca=ca)
        self.check_validity(validity, ca=ca)
        seen: set[str] = set()
        result = []
        for text in identifiers:
            ident = self._check_identifier(text, ca)
            if ident.value not in seen:
                seen.add(ident.value)
                result.append(ident)
        return result

    def check_key_type(self, key_type: KeyType, *, ca: str = "this CA") -> None:
        key_type = KeyType.parse(key_type)
        if key_type not in self.allowed_key_types:
            allowed = ", ".join(k.value for k in self.allowed_key_types)
            raise PolicyError(
                f"Key type {key_type.value} is not allowed by CA {ca!r} ({allowed}); "
                "use one of those key types."
            )

    def check_validity(self, validity: timedelta, *, ca: str = "this CA") -> None:
        if not isinstance(validity, timedelta):
            raise TypeError("validity must be a timedelta.")
        if validity <= timedelta(0):
            raise ValidationError(
                f"validity must be longer than zero (got {format_duration(validity)})."
            )
        if validity > self.max_validity:
            raise PolicyError(
                f"validity {format_duration(validity)} exceeds the max_validity "
                f"{format_duration(self.max_validity)} of CA {ca!r}; ask for a shorter validity."
            )

    def _check_identifier(self, text: str, ca: str) -> Identifier:
        raw = str(text).strip().lower()
        if "*" in raw:
            # RFC 6125 section 6.4.3 / BR 7.1.2.7.12: one wildcard, the whole left-most label,
            # never directly on a single-label (TLD) base.
            base = raw[2:].rstrip(".")
            if not raw.startswith("*.") or "*" in base or "." not in base:
                raise PolicyError(
                    f"Wildcard domain {text!r} is not allowed; use a single '*' as the whole "
                    "left-most label above a registrable domain, like *.example.com."
                )
            if not self.allow_wildcards:
                raise PolicyError(
                    f"Wildcard domain {text!r} is not allowed by CA {ca!r}; "
                    "list each host name instead."
                )
        ident = normalize_name(text)
        if ident.is_ip:
            if not self.allow_ip:
                raise PolicyError(
                    f"IP address {ident.value!r} is not allowed by CA {ca!r}; "
                    "certify a DNS name instead or use another CA."
                )
            return ident
        if self.permitted_domains and not any(
            name_within(ident.value, d) for d in self.permitted_domains
        ):
            permitted = ", ".join(self.permitted_domains)
            raise PolicyError(
                f"Domain {ident.value!r} is outside the permitted domains of CA {ca!r} "
                f"({permitted}); ask for names under those domains or use another CA."
            )
        return ident

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: durations in seconds, key types as strings."""
        return {
            "max_validity": int(self.max_validity.total_seconds()),
            "permitted_domains": list(self.permitted_domains),
            "allowed_key_types": [k.value for k in self.allowed_key_types],
            "allow_wildcards": self.allow_wildcards,
            "allow_ip": self.allow_ip,
            "client_auth": self.client_auth,
            "crl_url": self.crl_url,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SigningPolicy:
        """The inverse of to_dict; missing keys take their defaults."""
        unknown = sorted(set(doc) - set(_FIELDS))
        if unknown:
            raise ValidationError(
                f"Unknown signing policy field(s) {', '.join(unknown)}; "
                f"known fields: {', '.join(_FIELDS)}."
            )
        kwargs: dict[str, Any] = {}
        try:
            if "max_validity" in doc:
                seconds = doc["max_validity"]
                if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                    raise TypeError("max_validity must be a number of seconds.")
                kwargs["max_validity"] = timedelta(seconds=seconds)
            for name in ("permitted_domains", "allowed_key_types"):
                if name in doc:
                    if isinstance(doc[name], str) or not isinstance(doc[name], Sequence):
                        raise TypeError(f"{name} must be a list.")
                    kwargs[name] = tuple(doc[name])
            for name in ("allow_wildcards", "allow_ip", "client_auth", "crl_url"):
                if name in doc:
                    kwargs[name] = doc[name]
            return cls(**kwargs)
        except TypeError as e:
            raise ValidationError(f"The signing policy is malformed: {e}") from None


def _permitted_domains(domains: Sequence[str]) -> tuple[str, ...]:
    if isinstance(domains, str):
        raise TypeError("permitted_domains must be a sequence of domains, not a string.")
    result: list[str] = []
    for text in domains:
        ident = normalize_name(text)
        if ident.is_ip or ident.is_wildcard:
            raise ValidationError(
                f"permitted_domains entry {text!r} must be a plain DNS domain like example.com "
                "(it covers every name below it)."
            )
        if ident.value not in result:
            result.append(ident.value)
    return tuple(result)
