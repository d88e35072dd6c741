"""botocore exceptions translated into certman errors, with the fix in the message."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from certman.errors import CertmanError, OperationError

_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
}
_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "RequestThrottled",
    "ProvisionedThroughputExceededException",
}
_MISSING = {
    "NotFoundException",
    "NoSuchBucket",
    "NoSuchKey",
    "ResourceNotFoundException",
    "NoSuchEntity",
    "ListenerNotFound",
    "LoadBalancerNotFound",
    "CertificateNotFound",
    "404",
    "NotFound",
}


@contextmanager
def aws_call(
    action: str, resource: str, error: type[CertmanError] = OperationError
) -> Iterator[None]:
    """Run one AWS call; any botocore failure leaves as ``error`` with an operator's hint."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    try:
        yield
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        detail = str(e.response.get("Error", {}).get("Message", "")).rstrip(".")
        raise _client_error(action, resource, code, detail, error) from None
    except (NoCredentialsError, PartialCredentialsError, ProfileNotFound) as e:
        raise error(
            f"No usable AWS credentials for {action} ({e}); set [aws] profile, AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run certman with an instance role."
        ) from None
    except NoRegionError:
        raise error(f"No AWS region for {action}; set [aws] region.") from None
    except EndpointConnectionError as e:
        raise error(
            f"Cannot reach the AWS endpoint for {action} ({e.kwargs.get('endpoint_url', '')}); "
            "check the network and [aws] endpoint_url.",
            retryable=True,
        ) from None
    except ParamValidationError:
        # Its text quotes the parameters, which may hold a key: never show it.
        raise error(
            f"certman sent invalid parameters for {action} on {resource}; "
            "this is a bug in certman, please report it."
        ) from None
    except BotoCoreError as e:
        raise error(
            f"AWS {action} on {resource} failed: {type(e).__name__}.", retryable=True
        ) from None


def _client_error(
    action: str, resource: str, code: str, detail: str, error: type[CertmanError]
) -> CertmanError:
    said = f" ({code}: {detail})" if detail else f" ({code})"
    if code in _DENIED:
        return error(
            f"AWS denied {action} on {resource}{said}; grant that permission to the "
            "credentials certman uses."
        )
    if code in _THROTTLED:
        return error(
            f"AWS throttled {action} on {resource}{said}; certman will retry later.", retryable=True
        )
    if code in _MISSING:
        return error(f"{resource} does not exist{said}; check the name in the configuration.")
    if code == "DisabledException":
        return error(
            f"KMS key {resource} is disabled{said}; enable it (kms enable-key) or set "
            "[kms] key_id to an enabled key."
        )
    if code in {"KMSInvalidStateException", "KMSInvalidState"}:
        return error(
            f"KMS key {resource} cannot be used now{said}; it may be pending deletion "
            "(cancel-key-deletion) or disabled."
        )
    if code == "InvalidCiphertextException":
        return error(
            f"KMS refused to decrypt for {resource}: it was sealed for another "
            "certificate, revision or purpose, or it was altered."
        )
    if code.startswith("5") or code in {
        "InternalError",
        "ServiceUnavailable",
        "InternalFailure",
        "KMSInternalException",
    }:
        return error(
            f"AWS failed {action} on {resource}{said}; certman will retry later.", retryable=True
        )
    return error(f"AWS {action} on {resource} failed{said}.")
