"""One call of a prompt API, whichever door it came in by (HTTP, NATS):
check the caller, bind its variables, run the plan's steps in order (each
its own request on the bus, under the call's id as parent), check the
answer against the output schema (asking once for a repair), and record the
call's own row with its requests' totals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ingress.gateway import Gateway
from ingress.replies import DISCONNECTED
from ingress.session import BusSession
from schemas import subjects
from schemas.chat import ChatBody, Cost, Usage, content_text
from schemas.envelope import Origin, PromptRef
from schemas.errors import ClientClosed, GatewayError, InternalError, StageTimeout
from schemas.events import ApiCallEvent
from schemas.ids import new_id
from schemas.prompt_calls import ApiAnswer
from schemas.prompts import PromptVersion
from schemas.replies import Chunk, Failure, Final
from services import policy, prompt_api
from services import prompts as prompt_svc
from services.prompt_api import ApiPlan, OutputSchemaMismatch, Step

OnText = Callable[[str], Awaitable[None]]
# How long a cancelled step waits for the provider to say what it billed.
CANCEL_GRACE_S = 2.0


class PromptCall:
    def __init__(
        self,
        gw: Gateway,
        slug: str,
        variables: dict[str, Any],
        *,
        request_id: str,
        received_ns: int,
        origin: Origin,
        api_key: str | None,
        key_id: str = "",
        stream: bool = False,
        test: bool = False,
        traceparent: str = "",
    ) -> None:
        self.gw = gw
        self.slug = slug
        self.variables = variables
        self.id = request_id
        self.received_ns = received_ns
        self.origin: Origin = origin
        # A durable job names its key by id (it never keeps the secret).
        self.api_key, self.key_id = api_key, key_id
        self.stream = stream
        self.test = test
        # The caller's W3C trace context, passed on to each step's request.
        self.traceparent = traceparent
        self.deadline_ns = received_ns + int(gw.settings.request_timeout_s * 1e9)
        # Known once the slug resolved: the lifecycle headers come from it.
        self.plan: ApiPlan | None = None
        self.usage = Usage()
        self.cost = Cost()
        self.calls = 0
        self.schema_failures = 0
        self.ttft_ns = 0
        self._tenant_id = self._key_id = ""
        self._current: BusSession | None = None
        self.cancelled = False

    async def run(self, on_text: OnText | None = None) -> ApiAnswer | Failure:
        """The answer, or why there is none; ``on_text`` gets the last step's
        text as it streams. Either way the call is recorded."""
        try:
            result: ApiAnswer | Failure = await self._run(on_text)
        except GatewayError as exc:
            result = Failure.from_error(self.id, exc)
        self._record(result)
        return result

    def refuse(self, error: GatewayError) -> Failure:
        """End the call before it ran (its body was unreadable), recorded as any other."""
        failure = Failure.from_error(self.id, error)
        self._record(failure)
        return failure

    def cancel(self) -> None:
        """The caller went away: stop the step in flight (and its upstream call) and run no more."""
        self.cancelled = True
        if self._current is not None:
            self._current.queue.put_nowait(DISCONNECTED)

    async def _run(self, on_text: OnText | None) -> ApiAnswer | Failure:
        gw = self.gw
        # The key first: without one, which APIs exist is nobody's business.
        now_ms = time.time_ns() // 1_000_000
        if self.key_id:
            key = policy.key_by_id(self.key_id, gw.keys.mirror.items, now_ms)
        else:
            key = policy.authenticate(self.api_key, gw.keys.by_hash, now_ms)
        self._tenant_id, self._key_id = key.tenant_id, key.id
        self.plan = plan = gw.prompt_book.plan(self.slug)
        subscriptions = gw.mirrors[subjects.KV_SUBSCRIPTIONS].items.values()
        prompt_api.check_caller(self.slug, plan.api, key, self.test, subscriptions)
        pool = prompt_svc.bind(plan.version, self.variables)
        output: Any = None
        for number, step in enumerate(plan.steps, 1):
            last = number == len(plan.steps)
            body = prompt_svc.render(
                step.version, prompt_api.bind_step(step.version, pool), stream=self.stream and last
            )
            result = await self._step(step, body, on_text if last else None)
            if isinstance(result, Failure):
                if len(plan.steps) > 1:
                    result.message = f"Step {number} ({step.version.prompt}) failed: {result.message}"
                # The call's failure: its id, and what all its requests were billed.
                result.id, result.usage, result.cost = self.id, self.usage, self.cost
                return result
            output = result
            pool[step.output or "output"] = prompt_api.as_variable(output)
        ref = PromptRef(name=plan.prompt.name, version=plan.version.version, label=plan.label)
        api = plan.api
        return ApiAnswer(
            request_id=self.id,
            output=output,
            prompt=ref,
            usage=self.usage,
            cost=self.cost,
            state=api.state,
            successor=api.successor,
            sunset_at_ms=api.sunset_at_ms,
            calls=self.calls,
        )

    async def _step(self, step: Step, body: ChatBody, on_text: OnText | None) -> Any:
        """One step's output (checked against its schema, repaired once), or its Failure."""
        reply, text = await self._request(step, body, on_text)
        if isinstance(reply, Failure):
            return reply
        value, problem = prompt_api.parse_output(step.version, text)
        if problem is None:
            return value
        self.schema_failures += 1
        reply, repaired = await self._request(step, prompt_api.repair_body(body, text, problem), None)
        if isinstance(reply, Failure):
            return reply
        value, problem = prompt_api.parse_output(step.version, repaired)
        if problem is None:
            return value
        self.schema_failures += 1
        error = OutputSchemaMismatch(
            f"The model's answer did not match the output schema of {step.version.prompt!r}, also after one "
            f"repair request: {problem}. Its answer is in 'raw_output'.",
            raw_output=repaired,
        )
        return Failure.from_error(self.id, error)

    async def _request(self, step: Step, body: ChatBody, on_text: OnText | None) -> tuple[Final | Failure, str]:
        """One request on the bus, as a child of this call: its last reply and its text."""
        if self.cancelled:
            return Failure.from_error(self.id, ClientClosed("The client closed the connection.")), ""
        now_ns = time.time_ns()
        session = BusSession(
            self.gw,
            "chat",
            body.model,
            bool(body.stream),
            now_ns,
            new_id(now_ns),
            origin=self.origin,
            deadline_ns=self.deadline_ns,
        )
        self._current = session
        self.calls += 1
        try:
            await session.publish(
                self.api_key,
                body,
                prompt=self._ref(step.version, step.label),
                traceparent=self.traceparent,
                key_id=self.key_id,
            )
            reply, text = await self._follow(session, on_text)
        finally:
            self._current = None
            session.close()
        self._add(reply)
        return reply, text

    async def _follow(self, session: BusSession, on_text: OnText | None) -> tuple[Final | Failure, str]:
        if on_text is None:
            whole = await session.collect()
            if whole is None:  # the caller went away
                return await self._closed(session), ""
            message = whole.message if isinstance(whole, Final) else None
            return whole, content_text(message.content) if message is not None else ""
        texts: list[str] = []
        timeout = session.first_timeout()
        while True:
            reply = await session.next_reply(timeout)
            if reply is None:
                await session.cancel()
                return await self._closed(session), ""
            if isinstance(reply, Chunk):
                if reply.delta.content and reply.delta.index == 0:
                    if not self.ttft_ns:
                        self.ttft_ns = time.time_ns() - self.received_ns
                    texts.append(reply.delta.content)
                    await on_text(reply.delta.content)
                timeout = self.gw.settings.stream_idle_timeout_s
                continue
            if isinstance(reply, Final):
                return reply, "".join(texts)
            if not isinstance(reply, Failure):
                reply = Failure.from_error(
                    session.id, InternalError("The pipeline sent an unexpected reply.", status=502)
                )
            elif reply.code == StageTimeout.code:
                await session.cancel()
            session.record(reply)
            return reply, ""

    async def _closed(self, session: BusSession) -> Failure:
        """The call ends as the client's leaving, with what the cancelled step
        was billed: the provider says so in its last reply, shortly after."""
        failure = Failure.from_error(self.id, ClientClosed("The client closed the connection."))
        loop = asyncio.get_running_loop()
        until = loop.time() + CANCEL_GRACE_S
        while (left := until - loop.time()) > 0:
            reply = await session.next_reply(left)
            if isinstance(reply, Final | Failure):
                failure.usage, failure.cost = reply.usage, reply.cost
                break
        return failure

    def _ref(self, version: PromptVersion, label: str) -> PromptRef:
        return PromptRef(name=version.prompt, version=version.version, label=label, parent_id=self.id)

    def _add(self, reply: Final | Failure) -> None:
        u, c = reply.usage, reply.cost
        if u is not None:
            self.usage.prompt_tokens += u.prompt_tokens
            self.usage.completion_tokens += u.completion_tokens
            self.usage.cached_tokens += u.cached_tokens
            self.usage.cache_write_tokens += u.cache_write_tokens
            self.usage.reasoning_tokens += u.reasoning_tokens
        if c is not None:
            self.cost.input += c.input
            self.cost.cached_input += c.cached_input
            self.cost.output += c.output

    def _record(self, result: ApiAnswer | Failure) -> None:
        plan = self.plan
        done_ns = time.time_ns()
        event = ApiCallEvent(
            event_id=new_id(),
            request_id=self.id,
            received_at_ns=self.received_ns,
            slug=self.slug[:128],
            prompt_name=plan.prompt.name if plan else "",
            prompt_version=plan.version.version if plan else 0,
            prompt_label=plan.label if plan else "",
            origin=self.origin,
            status=200 if isinstance(result, ApiAnswer) else result.status,
            stream=self.stream,
            tenant_id=self._tenant_id,
            key_id=self._key_id,
            calls=min(self.calls, 255),
            schema_failures=min(self.schema_failures, 255),
            prompt_tokens=self.usage.prompt_tokens,
            completion_tokens=self.usage.completion_tokens,
            cost_pico_usd=self.cost.total,
            latency_ns=done_ns - self.received_ns,
            ttft_ns=self.ttft_ns or done_ns - self.received_ns,
        )
        if isinstance(result, Failure):
            event.error_type, event.error_code = result.type, result.code
        self.gw.events.emit(event)
