"""Redaction stage: apply the tenant's privacy rules to the request (mask,
redact, flag, or refuse it) before anything reaches the upstream."""

from __future__ import annotations

import time

from nats.aio.msg import Msg

from schemas import bus, subjects
from schemas.control import Tenant, decode_tenant
from schemas.envelope import Envelope, Privacy
from schemas.errors import InvalidRequest, RedactionUnavailable
from schemas.replies import Redacted
from services import mcp_privacy, privacy, rest_privacy, task_privacy
from services.bus.kv import KvMirror
from services.scan_memo import ScanMemo
from workers import runner


class RedactionStage:
    name = "redact"
    listen_on = (subjects.STAGE_REDACT,)
    entry = False
    concurrent = False

    def __init__(self) -> None:
        self.tenants: KvMirror[Tenant] = KvMirror(subjects.KV_TENANTS, decode_tenant)
        # A conversation's earlier turns come back in every request: each distinct one is scanned once.
        self.memo = ScanMemo()

    async def start(self, ctx: runner.StageContext) -> None:
        await self.tenants.start(ctx.js)

    async def handle(self, ctx: runner.StageContext, env: Envelope, msg: Msg | None, start_ns: int) -> None:
        tenant = self.tenants.items.get(env.tenant_id)
        # The client's own bytes would carry the prompt past redaction.
        env.raw = b""
        rules = privacy.rules_of(tenant) if tenant is not None else None
        held = rules.version if rules is not None else 0
        if env.rules_version > held:
            # Policy routed with rules this replica's copy does not have yet
            # (they were just enabled or changed): passing the request on
            # unmasked is what redaction exists to prevent.
            raise RedactionUnavailable(
                f"The redaction stage does not hold this tenant's privacy rules (version {env.rules_version}) "
                "yet; nothing was sent upstream.",
                code="redaction_rules_pending",
            )
        if rules is not None:
            if env.tool is not None:
                # An MCP call's arguments: the same detectors, over their string values.
                found = mcp_privacy.inspect_call(env.tool, rules)
            elif env.rest is not None:
                # A REST call's JSON body (policy routes only a service that opts in here).
                found = rest_privacy.inspect_body(env.rest, rules)
            elif env.task is not None:
                # An image, audio, moderation or rerank request's texts (never its uploaded bytes).
                found = task_privacy.inspect_task(env.task, rules)
            else:
                memoised = self.memo.finder(env.tenant_id, rules, privacy.findings)
                found = privacy.inspect(env.body, env.embeddings, rules, memoised)
                found.detections += privacy.injection(env.body, rules)
            for event in privacy.events(env.id, env.tenant_id, found.detections, rules.version, time.time_ns()):
                ctx.events.emit(event)
            blocked = found.blocked_by
            if blocked is not None and blocked.detector.startswith("injection:"):
                rules_hit = sorted(
                    {d.detector.removeprefix("injection:") for d in found.detections if d.action == "block"}
                )
                raise InvalidRequest(
                    f"The request looks like a prompt injection ({', '.join(rules_hit)}, in {blocked.where}); "
                    "this tenant's rules refuse it.",
                    code="prompt_injection",
                )
            if blocked is not None:
                # Names the detector and where, never the value.
                raise InvalidRequest(
                    f"The request holds a value this tenant's rules refuse to send ({blocked.detector}, in "
                    f"{blocked.where}).",
                    code=f"blocked_{blocked.detector}",
                )
            # A REST answer streams back unread: nothing is restored or checked in it.
            if (found.vault or rules.output) and env.rest is None:
                env.privacy = Privacy(found.vault, dict(rules.output), rules.version, rules.phone_region)
            if env.progress:  # the requester waits for this (fail closed otherwise)
                await ctx.send(env, bus.encode(Redacted(id=env.id)))
        await ctx.forward(env, start_ns)

    async def stop(self) -> None:
        await self.tenants.stop()


if __name__ == "__main__":
    runner.main(RedactionStage())
