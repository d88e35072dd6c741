"""ACME Renewal Information (RFC 9773): certificate identifiers, suggested windows, Retry-After."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

from certman.acme_client.client import AcmeClient
from certman.acme_client.problems import retry_after_from
from cryptography import x509

from certman.contracts.issuer import RenewalInfoRequest, RenewalInfoResponse
from certman.errors import CertmanError, IssuanceError, ValidationError

# RFC 9773 section 4.3: without a Retry-After, ask again in a few hours; whatever the server
# says, clamp it to a sane range (section 4.3.2: one minute to one day).
DEFAULT_RETRY_AFTER = timedelta(hours=6)
# After a failed or malformed answer (section 4.3.3), and no Retry-After came with it.
FAILED_RETRY_AFTER = timedelta(hours=1)
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


class RenewalInfo:
    """Fetches renewalInfo (section 4.2); when to ask again is the caller's to store.

    The inventory keeps each certificate's next fetch time (the answer's Retry-After), so
    the schedule survives restarts and is shared by every instance of the service.
    """

    def __init__(self, client: AcmeClient) -> None:
        self.client = client

    def supported(self) -> bool:
        return self.client.directory_info().renewal_info is not None

    def fetch(self, request: RenewalInfoRequest) -> RenewalInfoResponse | None:
        """The server's window for the certificate; None when there is nothing to ask.

        None: the server offers no ARI, or the certificate has expired (section 4.3:
        clients MUST NOT ask about those). A failed or malformed answer raises a
        retryable IssuanceError whose ``retry_after`` says when to ask again.
        """
        base = self.client.directory_info().renewal_info
        if base is None:
            return None
        identifier = cert_id(request.certificate_pem)  # ValidationError for a bad PEM
        cert = x509.load_pem_x509_certificate(request.certificate_pem)
        if cert.not_valid_after_utc <= request.now:
            return None
        try:
            response = self.client.get(
                f"{base.rstrip('/')}/{identifier}", "reading the renewal information"
            )
            body = response.json()
            window = body["suggestedWindow"]
            start = _rfc3339(window["start"])
            end = _rfc3339(window["end"])
        except CertmanError as e:
            raise self._unavailable(identifier, e.message, request.now, e.retry_after) from None
        except (KeyError, TypeError, ValueError) as e:
            raise self._unavailable(
                identifier, f"malformed answer ({type(e).__name__}: {e})", request.now, None
            ) from None
        if end <= start:  # section 4.3.3 names this case: treat it as no answer
            raise self._unavailable(
                identifier, "the suggested window ends before it starts", request.now, None
            )
        retry_after = retry_after_from(response.headers.get("Retry-After"), request.now)
        return RenewalInfoResponse(
            window_start=start,
            window_end=end,
            retry_after=_clamped(retry_after or request.now + DEFAULT_RETRY_AFTER, request.now),
            explanation_url=body.get("explanationURL"),
            cert_id=identifier,
        )

    def _unavailable(
        self, identifier: str, why: str, now: datetime, retry_after: datetime | None
    ) -> IssuanceError:
        # Section 4.3.3: ARI is advisory; the client keeps its own renewal time and may
        # ask again later (after the server's Retry-After when a failure carried one).
        return IssuanceError(
            f"The renewal information for {identifier} is unavailable: {why}",
            retryable=True,
            retry_after=_clamped(retry_after or now + FAILED_RETRY_AFTER, now),
        )


def _clamped(when: datetime, now: datetime) -> datetime:
    """Section 4.3.2: honour the server's Retry-After, within one minute and one day."""
    return min(max(when, now + MIN_RETRY_AFTER), now + MAX_RETRY_AFTER)


def _rfc3339(text: str) -> datetime:
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return value
