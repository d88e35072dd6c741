"""ACME Renewal Information (RFC 9773): certificate identifiers, suggested windows, Retry-After."""

from __future__ import annotations

import base64
import logging
import random
import threading
from datetime import datetime, timedelta

from cryptography import x509

from acme_client.client import AcmeClient
from acme_client.problems import retry_after_from
from certman.errors import CertmanError, ValidationError
from certman.interfaces import RenewalInfoRequest, RenewalInfoResponse

log = logging.getLogger("certman.acme")

# RFC 9773 section 4.3: without a Retry-After, ask again in a few hours; whatever the server
# says, clamp it to a sane range (section 4.3.2: one minute to one day).
DEFAULT_RETRY_AFTER = timedelta(hours=6)
MIN_RETRY_AFTER = timedelta(minutes=1)
MAX_RETRY_AFTER = timedelta(days=1)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def serial_der_bytes(serial: int) -> bytes:
    """The content octets of the DER INTEGER: big-endian two's complement, minimal length."""
    if serial <= 0:
        raise ValidationError("A certificate serial number must be positive (RFC 5280 4.1.2.2).")
    return serial.to_bytes((serial.bit_length() + 8) // 8, "big")


def cert_id(certificate_pem: bytes) -> str:
    """RFC 9773 section 4.1: base64url(AKI keyIdentifier) "." base64url(serial), no padding."""
    try:
        cert = x509.load_pem_x509_certificate(certificate_pem)
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise ValidationError(
            "The certificate has no Authority Key Identifier; ARI cannot name it."
        ) from None
    except ValueError as e:
        raise ValidationError(f"The certificate is not valid PEM: {e}.") from None
    if not aki.key_identifier:
        raise ValidationError("The certificate's Authority Key Identifier has no keyIdentifier.")
    return f"{_b64url(aki.key_identifier)}.{_b64url(serial_der_bytes(cert.serial_number))}"


def pick_renewal_time(
    window_start: datetime, window_end: datetime, *, rng: random.Random | None = None
) -> datetime:
    """RFC 9773 section 4.2: a uniformly random point in the window, whole seconds."""
    span = max(0, int((window_end - window_start).total_seconds()))
    return (window_start + timedelta(seconds=(rng or random).randint(0, span))).replace(
        microsecond=0
    )


class RenewalInfo:
    """Fetches renewalInfo and remembers each answer until its Retry-After (section 4.3)."""

    def __init__(self, client: AcmeClient) -> None:
        self.client = client
        self._cache: dict[str, RenewalInfoResponse] = {}
        self._lock = threading.Lock()

    def supported(self) -> bool:
        return self.client.directory_info().renewal_info is not None

    def fetch(self, request: RenewalInfoRequest) -> RenewalInfoResponse | None:
        """The server's window for the certificate, or None when it offers no ARI."""
        base = self.client.directory_info().renewal_info
        if base is None:
            return None
        identifier = cert_id(request.certificate_pem)  # ValidationError for a bad PEM
        cert = x509.load_pem_x509_certificate(request.certificate_pem)
        # Section 4.3: clients MUST NOT ask about a certificate that has expired.
        if cert.not_valid_after_utc <= request.now:
            return None
        with self._lock:
            cached = self._cache.get(identifier)
        if cached is not None and request.now < cached.retry_after:
            return cached
        try:
            response = self.client.get(
                f"{base.rstrip('/')}/{identifier}", "reading the renewal information"
            )
            body = response.json()
            window = body["suggestedWindow"]
            start = _rfc3339(window["start"])
            end = _rfc3339(window["end"])
        except (CertmanError, KeyError, TypeError, ValueError) as e:
            # ARI is advisory (section 4.3.3): without it the usual renewal time applies.
            log.warning("renewal information for %s unavailable: %s", identifier, e)
            return None
        if end < start:
            log.warning("renewal window for %s ends before it starts; ignored", identifier)
            return None
        retry_after = retry_after_from(response.headers.get("Retry-After"), request.now)
        if retry_after is None:
            retry_after = request.now + DEFAULT_RETRY_AFTER
        retry_after = min(
            max(retry_after, request.now + MIN_RETRY_AFTER), request.now + MAX_RETRY_AFTER
        )
        result = RenewalInfoResponse(
            window_start=start,
            window_end=end,
            retry_after=retry_after,
            explanation_url=body.get("explanationURL"),
            cert_id=identifier,
        )
        with self._lock:
            self._cache[identifier] = result
        return result


def _rfc3339(text: str) -> datetime:
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return value
