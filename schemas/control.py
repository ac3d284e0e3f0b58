"""Control-plane records kept in NATS KV buckets and watched by stages."""

from __future__ import annotations

import msgspec

from schemas.envelope import Deployment


class ApiKey(msgspec.Struct, omit_defaults=True):
    """Stored under the sha256 hex digest of the key; the key itself is never kept."""

    id: str
    tenant_id: str
    # fnmatch patterns of model names this key may call.
    models: list[str] = msgspec.field(default_factory=lambda: ["*"])
    disabled: bool = False


class RedactionRule(msgspec.Struct):
    name: str
    pattern: str


class Tenant(msgspec.Struct, omit_defaults=True):
    id: str
    redaction_rules: list[RedactionRule] = []


class ModelRoute(msgspec.Struct):
    """A public model name and the deployment that serves it."""

    name: str
    deployment: Deployment
    owned_by: str = "sluice"


kv_encode = msgspec.msgpack.encode
decode_key = msgspec.msgpack.Decoder(ApiKey).decode
decode_tenant = msgspec.msgpack.Decoder(Tenant).decode
decode_route = msgspec.msgpack.Decoder(ModelRoute).decode
