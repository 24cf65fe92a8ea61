"""How AWS errors map onto jitr's errors: which codes mean "try elsewhere", which "try later".

Messages carry the operation, the error code and AWS's message, truncated; callers add what the
call was about. AWS's message can quote a request parameter, so a caller that sends a secret checks
for it (see :mod:`jitr_aws.ec2` and the user data); botocore's own parameter errors are not quoted.
"""

from __future__ import annotations

from botocore.exceptions import ClientError, ParamValidationError
from jitr_core.errors import BackendError

# EC2 codes that mean "no capacity or quota for this candidate": another type, subnet or market may work.
CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientAddressCapacity",
        "InsufficientFreeAddressesInSubnet",
        "MaxSpotInstanceCountExceeded",
        "SpotMaxPriceTooLow",
        "VcpuLimitExceeded",
        "InstanceLimitExceeded",
        "Unsupported",
        "UnfulfillableCapacity",
    }
)

# Codes that mean "AWS is busy or failing": the same call may pass later.
TRANSIENT_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "Unavailable",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServiceError",
        "InternalServiceErrorException",
    }
)

_MESSAGE_LIMIT = 300


def error_code(exc: Exception) -> str:
    """The AWS error code of a ``ClientError`` (empty for anything else)."""
    return str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, ClientError) else ""


def error_text(exc: Exception) -> str:
    """``"<code>: <message>"`` from a ``ClientError``; the class and text of other botocore errors."""
    if isinstance(exc, ParamValidationError):
        return type(exc).__name__  # its text may quote parameter values
    if not isinstance(exc, ClientError):
        message = str(exc)
        return f"{type(exc).__name__}: {message[:_MESSAGE_LIMIT]}" if message else type(exc).__name__
    message = str(exc.response.get("Error", {}).get("Message", "")).strip()
    if len(message) > _MESSAGE_LIMIT:
        message = message[:_MESSAGE_LIMIT] + "..."
    return f"{error_code(exc)}: {message}" if message else error_code(exc)


def is_transient(exc: Exception) -> bool:
    """True for throttling, 5xx answers and failures to reach AWS at all (connection, timeout)."""
    if isinstance(exc, ParamValidationError):
        return False
    if not isinstance(exc, ClientError):
        return True
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return error_code(exc) in TRANSIENT_CODES or status >= 500


def backend_error(service: str, operation: str, exc: Exception, about: str = "") -> BackendError:
    """A :class:`BackendError` saying which call failed, on what, and what AWS answered."""
    where = f" for {about}" if about else ""
    return BackendError(f"{service} {operation}{where} failed: {error_text(exc)}")
