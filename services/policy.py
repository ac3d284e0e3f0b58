"""Policy: who is calling, may they call this model, and which stages follow."""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

from schemas import subjects
from schemas.control import ApiKey, Tenant
from schemas.envelope import Envelope
from schemas.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from services.keys import hash_key, key_from_header


def check_body(env: Envelope) -> None:
    """A direct NATS caller must send exactly one body, and one that names a model."""
    if (env.body is None) == (env.embeddings is None):
        raise InvalidRequest("An envelope carries exactly one of 'body' (chat) and 'embeddings'.")
    if env.body is not None and not env.body.messages:
        raise InvalidRequest("'messages' must contain at least one message.")
    if not env.model:
        raise InvalidRequest("'model' is required.")


def authenticate(header: str | None, keys: Mapping[str, ApiKey]) -> ApiKey:
    key = key_from_header(header)
    if key is None:
        raise AuthenticationFailed("Missing API key: send 'Authorization: Bearer <key>'.", code="missing_api_key")
    record = keys.get(hash_key(key))
    if record is None or record.disabled:
        raise AuthenticationFailed("Incorrect API key provided.")
    return record


def may_call(record: ApiKey, model: str) -> bool:
    return any(fnmatchcase(model, pattern) for pattern in record.models)


def check_model(record: ApiKey, model: str) -> None:
    if not may_call(record, model):
        raise PermissionDenied(f"Key {record.id!r} may not call model {model!r}.")


def build_slip(tenant: Tenant | None) -> list[str]:
    """The hops after policy. A stage a tenant does not use is not on its slip."""
    slip = []
    if tenant is not None and tenant.redaction_rules:
        slip.append(subjects.STAGE_REDACT)
    slip += [subjects.STAGE_ROUTE, subjects.STAGE_CALL]
    return slip
