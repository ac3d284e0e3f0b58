"""A REST call as one try of the provider stage's walk: the instance
routing chose, called with the caller's method, path, headers and body, its
answer streamed back as it is read.

The answer goes out in the order it comes: the head (status, headers) and
then each read of the body (at most ``SLICE`` bytes; whatever arrived, so
an SSE event is passed on the moment it is read, never held for more), each
through ``on_body``; nothing holds the whole body. An answer that was all
there with its head (a small JSON) goes back in the outcome instead, to ride
on the ``Final`` alone: one reply rather than two.

Which failures may be tried at the next instance (``CallFailed.repeatable``):

* none reached the instance (refused, unknown host, no connection in
  time): any method may, nothing was sent;
* otherwise only an idempotent method (``IDEMPOTENT_METHODS``), and only
  before the head arrived; after it, never (the caller may already hold
  part of the answer);
* an answer is the answer, whatever its status (a 404 or a 500 is the
  service's to give), except a 502, 503 or 504 to an idempotent method
  while another instance is left to try (``may_fail_over``): those say the
  instance (or what stands before it) could not serve, and another may. On
  the last instance the service's own answer is relayed as it is.

A body past the service's ``max_response_bytes`` is cut there and the call
ends with a 502 (before the head, when its ``Content-Length`` says so). The
service's price is charged for every answer the caller got (a call that
failed costs nothing).

A small answer whose ``Content-Length`` fits in one slice is read whole
before it goes back, so it rides on the ``Final`` whether or not its body
came in the same read as its head (its headers then carry the cost).

A requester that paces the body (``flow``, ``services.flow_window``) is
sent at most its window past its latest credit: the next slice is read only
once the window opens, so a slow client pauses the service's connection
(TCP backpressure) rather than have any process hold the body. A window
shut longer than the service's ``read_timeout_s`` ends the call
(``SlowReader``) and closes the connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import aiohttp

from schemas.chat import Cost, Usage
from schemas.envelope import Deployment
from schemas.errors import (
    GatewayError,
    RecordNotFound,
    SlowReader,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from schemas.rest import IDEMPOTENT_METHODS, RestCall, RestHead, RestResult, RestService, service_key, service_model
from services.flow_window import SendWindow
from services.providers.call import CallFailed, CallOutcome, CallProgress
from services.providers.errors import classify
from services.providers.rest.client import SLICE, RestClient
from services.providers.rest.headers import mount_prefix, request_headers, response_headers
from services.providers.rest.target import upstream_url

log = logging.getLogger("sluice.rest")

# A head and a slice of the body, or (head None) the next slice: to the caller, in order.
OnBody = Callable[[RestHead | None, bytes], Awaitable[None]]
# What another instance may answer better (RFC 9110: bad gateway, unavailable, gateway timeout).
FAIL_OVER_STATUSES = frozenset({502, 503, 504})
RESPONSE_TOO_LARGE = "response_too_large"


class RestCaller:
    """Calls REST services by their current records (``services``: the
    stage's mirror of ``sluice_services``, by ``service_key``)."""

    def __init__(self, client: RestClient, services: Mapping[str, RestService]) -> None:
        self.client = client
        self.services = services

    async def call(
        self,
        dep: Deployment,
        call: RestCall,
        progress: CallProgress,
        on_body: OnBody,
        *,
        may_fail_over: bool = True,
        flow: SendWindow | None = None,
    ) -> CallOutcome:
        start_ns = time.time_ns()
        service = self.services.get(service_key(call.service, call.version))
        if service is None:
            error = RecordNotFound(f"REST service {call.service!r} v{call.version} is not registered.")
            raise CallFailed(error, start_ns, 0, repeatable=False)
        try:
            url = upstream_url(dep.base_url, call.path)
            headers = request_headers(call, service)
        except GatewayError as exc:
            raise CallFailed(exc, start_ns, 0, repeatable=False) from exc
        idempotent = call.method in IDEMPOTENT_METHODS
        progress.sent = True
        try:
            resp = await self.client.send(
                call.method, url, headers, call.body, service.connect_timeout_s, service.read_timeout_s
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            error, sent = _not_answered(exc, service)
            raise CallFailed(error, start_ns, 0, repeatable=idempotent or not sent) from exc
        first_byte_ns = progress.first_byte_ns = time.time_ns()
        try:
            if idempotent and may_fail_over and resp.status in FAIL_OVER_STATUSES:
                error = classify(resp.status, resp.reason or "", headers=resp.headers)
                raise CallFailed(error, start_ns, first_byte_ns)
            prefix = mount_prefix(call.service, call.version)
            head = RestHead(resp.status, response_headers(resp.raw_headers, dep.base_url, prefix))
            result = RestResult(status=resp.status)
            cap = service.max_response_bytes
            # A HEAD's Content-Length is its GET's: no body comes.
            bodiless = call.method == "HEAD" or resp.status in (204, 304)
            if not bodiless and resp.content_length is not None and resp.content_length > cap:
                raise CallFailed(_too_large(service), start_ns, first_byte_ns, repeatable=False)
            body = resp.content
            small = resp.content_length is not None and resp.content_length <= min(cap, SLICE)
            if small or (body.is_eof() and body.total_bytes <= min(cap, SLICE)):
                # All of it came with the head, or soon will: it rides on the Final.
                data = await self._whole(body, service, start_ns, first_byte_ns)
                result.head, result.response_bytes = head, len(data)
                resp.release()
                return _answered(call, service, result, start_ns, first_byte_ns, data)
            await self._stream(resp, head, result, on_body, service, (start_ns, first_byte_ns), flow)
        except BaseException:
            # Not released to the pool: an answer not read to its end leaves
            # the connection unusable, and a cancelled call must stop the
            # instance's work at once.
            resp.close()
            raise
        resp.release()
        return _answered(call, service, result, start_ns, first_byte_ns, b"")

    @staticmethod
    async def _whole(body: aiohttp.StreamReader, service: RestService, start_ns: int, first_byte_ns: int) -> bytes:
        try:
            return await body.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error, _ = _not_answered(exc, service, head_came=True)
            raise CallFailed(error, start_ns, first_byte_ns, repeatable=False) from exc

    async def _stream(
        self,
        resp: aiohttp.ClientResponse,
        head: RestHead,
        result: RestResult,
        on_body: OnBody,
        service: RestService,
        times: tuple[int, int],
        flow: SendWindow | None,
    ) -> None:
        """The head (with what was already read) and then each read of the
        body, as it comes, to ``on_body``; each once ``flow`` has room."""
        body, cap = resp.content, service.max_response_bytes
        start_ns, first_byte_ns = times
        first: RestHead | None = head
        try:
            data = body.read_nowait(SLICE)
            while True:
                if result.response_bytes + len(data) > cap:
                    data = data[: cap - result.response_bytes]
                    if data:
                        await on_body(first, data)
                    raise CallFailed(_too_large(service), start_ns, first_byte_ns, repeatable=False)
                result.response_bytes += len(data)
                if data or first is not None:
                    # A slice waits here while the window is shut, and the
                    # next is not read meanwhile: the service's connection fills.
                    if flow is not None and not await flow.room(service.read_timeout_s):
                        raise CallFailed(_slow_reader(service), start_ns, first_byte_ns, repeatable=False)
                    await on_body(first, data)
                    first = None
                    if flow is not None:
                        flow.spent(len(data))
                data = await body.read(SLICE)
                if not data:
                    return
        except (aiohttp.ClientError, TimeoutError) as exc:
            error, _ = _not_answered(exc, service, head_came=True)
            raise CallFailed(error, start_ns, first_byte_ns, repeatable=False) from exc


def _answered(
    call: RestCall, service: RestService, result: RestResult, start_ns: int, first_byte_ns: int, data: bytes
) -> CallOutcome:
    return CallOutcome(
        model=service_model(call.service, call.version),
        usage=Usage(),
        cost=Cost(call=service.price_pico_usd),
        finish_reason=None,
        message=None,
        start_ns=start_ns,
        first_byte_ns=first_byte_ns,
        end_ns=time.time_ns(),
        rest=result,
        data=data,
    )


def _too_large(service: RestService) -> UpstreamError:
    return UpstreamError(
        f"The answer of REST service {service.slug!r} is larger than its max_response_bytes "
        f"({service.max_response_bytes}).",
        code=RESPONSE_TOO_LARGE,
    )


def _slow_reader(service: RestService) -> SlowReader:
    return SlowReader(
        f"The client took none of the answer of REST service {service.slug!r} for {service.read_timeout_s:g} s "
        "(its read_timeout_s): the call was ended rather than have the gateway hold the answer."
    )


def _not_answered(exc: BaseException, service: RestService, *, head_came: bool = False) -> tuple[GatewayError, bool]:
    """What went wrong, as the caller's error, and whether the request may
    have reached the instance (False: no connection was ever made)."""
    where = f"REST service {service.slug!r}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout(f"{where} did not accept a connection in {service.connect_timeout_s:g} s."), False
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.InvalidURL):
        # The transport's words go to the log: they name our client's internals.
        log.warning("%s unreachable: %r", where, exc)
        return UpstreamUnreachable(f"{where} is unreachable."), False
    if isinstance(exc, TimeoutError):
        what = "sent nothing more" if head_came else "did not answer"
        return UpstreamTimeout(f"{where} {what} within {service.read_timeout_s:g} s."), True
    log.warning("%s: %s: %r", where, "answer cut short" if head_came else "connection failed", exc)
    if head_came:
        return UpstreamError(f"{where} closed the connection before its answer was complete."), True
    return UpstreamError(f"{where} closed the connection before it answered."), True
