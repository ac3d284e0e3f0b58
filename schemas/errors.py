"""Typed gateway errors.

Every error a stage can end a request with is one of these. Each carries the
HTTP status and the OpenAI error ``type`` it maps to, so the ingress renders
``{"error": {"message", "type", "code"}}`` without a lookup table of its own,
and a ``Failure`` reply on the bus is just ``Failure.from_error(request_id, error)``.
"""

from __future__ import annotations

from enum import StrEnum

from schemas.reservation import RateState


class ErrorType(StrEnum):
    """OpenAI's error ``type`` values, plus the gateway-side ones we add."""

    INVALID_REQUEST = "invalid_request_error"
    AUTHENTICATION = "authentication_error"
    PERMISSION = "permission_error"
    NOT_FOUND = "not_found_error"
    REQUEST_TOO_LARGE = "request_too_large"
    RATE_LIMIT = "rate_limit_error"
    INSUFFICIENT_QUOTA = "insufficient_quota"
    UPSTREAM = "upstream_error"
    TIMEOUT = "timeout_error"
    SERVER = "server_error"


# nginx's code for "client closed the request": no HTTP answer is ever sent
# with it, but rows and attempts record it.
CLIENT_CLOSED_STATUS = 499


class GatewayError(Exception):
    """Base of every error that ends a request with a client-visible status."""

    status: int = 500
    type: ErrorType = ErrorType.SERVER
    code: str = "internal_error"
    # Whether the same request may succeed if tried again (later, or on
    # another deployment): rate limits, overload, 5xx and timeouts are;
    # a bad request, a too-long prompt or a refused key are not.
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.retry_after_s = retry_after_s


class InvalidRequest(GatewayError):
    status = 400
    type = ErrorType.INVALID_REQUEST
    code = "invalid_request"


class UnsupportedEncoding(GatewayError):
    """A body in a ``Content-Encoding`` the gateway does not read."""

    status = 415
    type = ErrorType.INVALID_REQUEST
    code = "unsupported_content_encoding"


class RequestTooLarge(GatewayError):
    status = 413
    type = ErrorType.INVALID_REQUEST
    code = "request_too_large"


class RequestTimeout(GatewayError):
    """The client did not send its whole body in time (a slow or stalled upload)."""

    status = 408
    type = ErrorType.INVALID_REQUEST
    code = "request_timeout"


class AuthenticationFailed(GatewayError):
    status = 401
    type = ErrorType.AUTHENTICATION
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = ErrorType.PERMISSION
    code = "model_not_allowed"


class KeyExpired(AuthenticationFailed):
    code = "api_key_expired"


class SubscriptionPending(PermissionDenied):
    code = "subscription_pending"


class SubscriptionRejected(PermissionDenied):
    code = "subscription_rejected"


class RateLimitExceeded(GatewayError):
    """The caller's own requests, tokens or parallel limit (not the upstream's)."""

    status = 429
    type = ErrorType.RATE_LIMIT
    code = "rate_limit_exceeded"
    # The caller's limits as the refusal saw them.
    rate: RateState | None = None


class QuotaUnavailable(GatewayError):
    """The shared limit counters cannot be reached, so no one can tell what is left."""

    status = 503
    type = ErrorType.SERVER
    code = "quota_unavailable"
    retryable = True


class QuotaExceeded(GatewayError):
    """The request would take the key's or tenant's spend past its budget."""

    status = 429
    type = ErrorType.INSUFFICIENT_QUOTA
    code = "insufficient_quota"


class RedactionUnavailable(GatewayError):
    """The redaction stage did not pass the request in its time: it fails
    closed, and nothing reaches the upstream."""

    status = 503
    type = ErrorType.SERVER
    code = "redaction_unavailable"
    retryable = True


class GatewayBusy(GatewayError):
    """This gateway process holds as much work as it may; another try (or replica) can take it."""

    status = 503
    type = ErrorType.SERVER
    code = "gateway_busy"


class SlowReader(GatewayError):
    """A client read too slowly (a WebSocket's, or a REST answer's that took
    nothing for the service's read timeout): the gateway ended a request
    rather than buffer for it."""

    status = 503
    type = ErrorType.SERVER
    code = "slow_reader"


class RecordNotFound(GatewayError):
    """An admin API record that does not exist, or that the caller may not see."""

    status = 404
    type = ErrorType.NOT_FOUND
    code = "not_found"


class AnalyticsUnavailable(GatewayError):
    """ClickHouse (through the analytics sink) cannot answer right now."""

    status = 503
    type = ErrorType.SERVER
    code = "analytics_unavailable"
    retryable = True


class RecordConflict(GatewayError):
    """The record exists already, changed meanwhile, or is still in use."""

    status = 409
    type = ErrorType.INVALID_REQUEST
    code = "conflict"


class RequestIdReused(RecordConflict):
    """A bus caller chose an id that names another request already."""

    code = "request_id_reused"


class ModelNotFound(GatewayError):
    status = 404
    type = ErrorType.NOT_FOUND
    code = "model_not_found"


class UpstreamError(GatewayError):
    """The upstream failed (5xx, broken stream, unreadable answer)."""

    status = 502
    type = ErrorType.UPSTREAM
    code = "upstream_error"
    retryable = True


class UpstreamRateLimited(UpstreamError):
    status = 429
    type = ErrorType.RATE_LIMIT
    code = "upstream_rate_limited"


class UpstreamOverloaded(UpstreamError):
    """The upstream is overloaded (Anthropic's 529, a 503): try later or elsewhere."""

    status = 503
    code = "upstream_overloaded"


class UpstreamUnreachable(UpstreamError):
    status = 502
    code = "upstream_unreachable"


class UpstreamInvalidRequest(GatewayError):
    """The upstream refused the request as malformed: the caller's to fix."""

    status = 400
    type = ErrorType.INVALID_REQUEST
    code = "upstream_invalid_request"


class ContextLengthExceeded(UpstreamInvalidRequest):
    code = "context_length_exceeded"


class ContentFiltered(UpstreamInvalidRequest):
    """The upstream's safety system blocked the prompt."""

    code = "content_filter"


class UpstreamAuthFailed(GatewayError):
    """The upstream refused the gateway's provider key: an operator's problem,
    not the caller's, so not a 401 (which would blame the caller's key)."""

    status = 502
    type = ErrorType.UPSTREAM
    code = "upstream_auth_failed"


class UpstreamTimeout(GatewayError):
    status = 504
    type = ErrorType.TIMEOUT
    code = "upstream_timeout"
    retryable = True


class StageTimeout(GatewayError):
    status = 504
    type = ErrorType.TIMEOUT
    code = "gateway_timeout"
    retryable = True


class ClientClosed(GatewayError):
    """The client went away before its answer was complete. Never sent to it
    (no one listens); the row records it, with what the upstream billed."""

    status = CLIENT_CLOSED_STATUS
    type = ErrorType.INVALID_REQUEST
    code = "client_closed"


class StageStopping(GatewayError):
    """The process holding the request was stopped before it could finish."""

    status = 503
    type = ErrorType.SERVER
    code = "gateway_stopping"
    retryable = True


class InternalError(GatewayError):
    status = 500
    type = ErrorType.SERVER
    code = "internal_error"
