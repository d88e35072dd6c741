"""botocore exceptions translated into certman errors, with the fix in the message.

Only the modules of certman/aws (and the AWS deploy targets) call boto3; each call runs
inside ``aws_call``, so no botocore exception ever leaves them. Throttling and 5xx are
retried by botocore first (standard retry mode, see clients.py); what is still failing
is a *retryable* certman error, so the lifecycle backs off and tries again later.

So is what an operator can fix outside certman without certman asking for anything else:
AccessDenied (grant it), rejected or missing credentials (renew them), a missing bucket,
key or ACM ARN (create it, or `certman acm import`), a disabled or pending-deletion KMS
key (enable it). Work already done stays valid: an issued revision keeps its persisted
state and resumes once the cause is fixed (the next attempt after the back-off, or
`certman renew NAME` at once), instead of being marked failed and issued again.
Permanent: what trying again can never fix (a KMS key deleted for good, a ciphertext
sealed for another context, parameters AWS cannot accept, an unknown error code).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from certman.errors import CertmanError, OperationError

_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
    "Forbidden",
    # HEAD answers have no body: botocore names the error by its status alone.
    "403",
}
# What S3 answers a HEAD it refuses without saying why: no permission, or (SSE-C) a
# missing or wrong customer key.
_BARE_400 = {"400", "BadRequest"}
# The IAM permission behind an API call, where its name differs from the call's.
_PERMISSION = {
    "s3:HeadObject": "s3:GetObject",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:CopyObject": "s3:GetObject and s3:PutObject",
}
_BAD_CREDENTIALS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
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
    # Route 53: the previous change batch of this zone is still being applied.
    "PriorRequestNotComplete",
}
_MISSING = {
    "NotFoundException",
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchVersion",
    "ResourceNotFoundException",
    "NoSuchEntity",
    "ListenerNotFound",
    "LoadBalancerNotFound",
    "CertificateNotFound",
    "NoSuchHostedZone",
    "NoSuchChange",
    "404",
    "NotFound",
}
_TRANSIENT = {
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "KMSInternalException",
    "KeyUnavailableException",
    "DependencyTimeoutException",
    "RequestTimeout",
}
# AWS error messages name resources, never secrets; still, keep them short.
_DETAIL_LIMIT = 200


@dataclass(frozen=True, kw_only=True)
class Hints:
    """What the operator should do when a call fails, where the caller knows better."""

    # What to do when AWS says the resource does not exist.
    missing: str = "check the name in the configuration"
    # The resource can never come back (a KMS key ARN a record names): permanent.
    missing_is_final: bool = False
    # The KMS key behind the call when it is not ``resource`` (S3 SSE-KMS), as the
    # subject of a sentence ("KMS key alias/x"), and the setting that names it.
    kms_key: str = ""
    kms_setting: str = "[kms] key_id"


@contextmanager
def aws_call(
    action: str,
    resource: str,
    error: type[CertmanError] = OperationError,
    hints: Hints | None = None,
) -> Iterator[None]:
    """Run one AWS call; any botocore failure leaves as ``error`` with an operator's hint.

    ``action`` is the API call ("kms:Decrypt"), ``resource`` what it acted on, ``hints``
    what the caller knows better than the generic advice (None: the generic advice).
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
    )

    try:
        yield
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        detail = str(e.response.get("Error", {}).get("Message", "")).rstrip(".")
        raise client_error(action, resource, code, detail[:_DETAIL_LIMIT], error, hints) from None
    except (NoCredentialsError, PartialCredentialsError) as e:
        # An instance role or SSO session can come back by itself: retryable.
        raise error(
            f"No usable AWS credentials for {action} ({e}); set [aws] profile, AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run certman with an instance role.",
            retryable=True,
        ) from None
    except ProfileNotFound as e:
        raise error(
            f"The AWS profile for {action} does not exist ({e}); fix [aws] profile or AWS_PROFILE."
        ) from None
    except NoRegionError:
        raise error(f"No AWS region for {action}; set [aws] region.") from None
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError):
        raise error(
            f"Cannot reach AWS for {action} on {resource}; check the network and [aws] "
            f"endpoint_url, then {_AGAIN}.",
            retryable=True,
        ) from None
    except ParamValidationError:
        # Its text quotes the parameters, which may hold a key: never show it. The usual
        # cause is a configured name AWS cannot accept, not certman.
        raise error(
            f"botocore refused the parameters of {action} on {resource} before sending "
            "them; check the names configured for it ([aws], [kms] key_id, [archive] bucket "
            "and prefix, target ARNs and regions). If they are right, report it as a bug."
        ) from None
    except BotoCoreError as e:
        raise error(
            f"AWS {action} on {resource} failed: {type(e).__name__}; {_AGAIN}.",
            retryable=True,
        ) from None


# Transient failures. Not "certman will retry": a one-shot command (acm sync, keys
# rotate) does not; the renewal service does, and its notices say when.
_AGAIN = "try again later"


def client_error(
    action: str,
    resource: str,
    code: str,
    detail: str,
    error: type[CertmanError],
    hints: Hints | None = None,
) -> CertmanError:
    """The certman error for one AWS error code (also used by tests, with made-up codes)."""
    hints = hints or Hints()
    said = f" ({code}: {detail})" if detail else f" ({code})"
    permission = _PERMISSION.get(action, action)
    if code in _DENIED:
        return error(
            f"AWS denied {action} on {resource}{said}; grant {permission} on it to the IAM "
            "identity certman runs as.",
            retryable=True,
        )
    if code in _BARE_400 and action == "s3:HeadObject":
        return error(
            f"S3 refused {action} on {resource}{said} without a reason: grant {permission} "
            "on it to the IAM identity certman runs as, or, for an SSE-C object, its customer "
            "key is missing or wrong.",
            retryable=True,
        )
    if code in _BAD_CREDENTIALS:
        return error(
            f"AWS rejected the credentials for {action}{said}; renew them or fix "
            "[aws] profile / AWS_ACCESS_KEY_ID.",
            retryable=True,
        )
    if code in _THROTTLED:
        return error(
            f"AWS throttled {action} on {resource}{said} even after retries; {_AGAIN}.",
            retryable=True,
        )
    if code in _MISSING:
        return error(
            f"{resource} does not exist{said}; {hints.missing}.",
            retryable=not hints.missing_is_final,
        )
    key = hints.kms_key or f"KMS key {resource}"
    if code in {"DisabledException", "KMS.DisabledException"}:
        return error(
            f"{key} is disabled{said}; enable it (aws kms enable-key) or set "
            f"{hints.kms_setting} to an enabled key.",
            retryable=True,
        )
    if code in {"KMSInvalidStateException", "KMSInvalidState", "KMS.KMSInvalidStateException"}:
        return error(
            f"{key} cannot be used now{said}; it may be pending deletion "
            f"(aws kms cancel-key-deletion) or pending import, or set {hints.kms_setting} to "
            "another key.",
            retryable=True,
        )
    if code in {"InvalidCiphertextException", "IncorrectKeyException"}:
        return error(
            f"KMS refused to decrypt for {resource}: it was sealed for another "
            "certificate, revision or purpose, or it was altered."
        )
    if code.startswith("5") or code in _TRANSIENT:
        return error(f"AWS failed {action} on {resource}{said}; {_AGAIN}.", retryable=True)
    return error(f"AWS {action} on {resource} failed{said}.")
