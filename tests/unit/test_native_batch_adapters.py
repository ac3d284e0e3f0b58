"""Native batches, the translation half: OpenAI's and Azure's Batch and Files
shapes, Anthropic's Message Batches, against fixtures in each provider's
own format (copied from their API references), and each results line ended
as the gateway ends a request (the family's own adapters, the batch price),
written as one bounded ``NativeLineEnds`` blob."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from schemas.chat import ChatBody, EmbeddingsBody, Message, Usage
from schemas.envelope import Deployment
from schemas.errors import UpstreamError
from schemas.native_batch import NativeLineEnd, NativeLineEnds
from schemas.replies import Failure, Final
from services import native_batch
from services import usage as usage_svc
from services.providers.anthropic.batch import AnthropicBatches, fits
from services.providers.anthropic.chat import AnthropicChat
from services.providers.azure.batch import AzureBatches
from services.providers.azure.chat import AzureOpenAIChat
from services.providers.openai.batch import OpenAIBatches, safe_id
from services.providers.openai.chat import OpenAIChat
from services.providers.tasks.batch_types import LineAnswer, UnreadableLine
from services.providers.tasks.native_batch_io import LineTooLong, jsonl_lines
from services.providers.tasks.native_ends import EndsWriter, line_end, read_into
from tests.adapters import fixture, sent_json

OPENAI = Deployment("oa", "openai", "https://api.openai.test/v1", "gpt-4o-mini", catalog_model="gpt-4o-mini")
AZURE = Deployment(
    "az",
    "azure",
    "https://res.openai.azure.test",
    "my-batch-4o",
    api_version="2024-10-21",
    catalog_model="azure/gpt-4o-mini",
)
CLAUDE = Deployment(
    "cl",
    "anthropic",
    "https://api.anthropic.test",
    "claude-3-5-haiku-20241022",
    catalog_model="claude-3-5-haiku-20241022",
)
EMBED = Deployment(
    "em", "openai", "https://api.openai.test/v1", "text-embedding-3-small", catalog_model="text-embedding-3-small"
)
openai = OpenAIBatches(OpenAIChat())
azure = AzureBatches(AzureOpenAIChat())
anthropic = AnthropicBatches(AnthropicChat())
BODY = ChatBody(model="alias", messages=[Message(role="user", content="What is 2+2?")], max_tokens=50)


def jsonl(path: str) -> list[bytes]:
    return [line for line in fixture(path).splitlines() if line.strip()]


# -- OpenAI ------------------------------------------------------------------
def test_an_openai_line_wraps_the_body_the_chat_adapter_sends_alone() -> None:
    direct = OpenAIChat().build_request(OPENAI, BODY, "sk", stream=False).content
    line = openai.line("request-1", "chat", direct)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert sent_json(line) == {
        "custom_id": "request-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": sent_json(direct),
    }
    assert sent_json(direct)["model"] == "gpt-4o-mini" and "stream" not in sent_json(direct)


def test_openai_urls_headers_and_the_batch_it_creates() -> None:
    assert openai.files_url(OPENAI) == "https://api.openai.test/v1/files"
    assert openai.batches_url(OPENAI) == "https://api.openai.test/v1/batches"
    assert openai.list_url(OPENAI, "batch_x") == "https://api.openai.test/v1/batches?limit=100&after=batch_x"
    assert openai.batch_url(OPENAI, "batch_abc") == "https://api.openai.test/v1/batches/batch_abc"
    assert openai.cancel_url(OPENAI, "batch_abc") == "https://api.openai.test/v1/batches/batch_abc/cancel"
    assert openai.file_content_url(OPENAI, "file-x") == "https://api.openai.test/v1/files/file-x/content"
    assert openai.headers("sk", None) == {"authorization": "Bearer sk"}
    assert sent_json(openai.create_body("file-abc", "embeddings", "batch_01")) == {
        "input_file_id": "file-abc",
        "endpoint": "/v1/embeddings",
        "completion_window": "24h",
        "metadata": {"sluice_batch_id": "batch_01"},
    }
    assert openai.read_file(fixture("openai/file_batch.json")) == "file-abc123"


def test_an_upstream_id_goes_into_a_url_only_as_an_id() -> None:
    for hostile in ("../v1/files", "a/b", "x?y=1", "", ".."):
        with pytest.raises(UpstreamError):
            safe_id(hostile)
    assert safe_id("batch_fe3f047a-de39-4068") == "batch_fe3f047a-de39-4068"


def test_a_completed_batch_reads_as_ended_with_its_counts_and_files() -> None:
    state = openai.read_batch(fixture("openai/batch_completed.json"))
    assert (state.id, state.status, state.ended) == ("batch_abc123", "completed", True)
    assert (state.completed, state.failed, state.error) == (95, 5, "")
    assert (state.output_file_id, state.error_file_id) == ("file-cvaTdG", "file-HOWS94")
    assert state.endpoint == "/v1/chat/completions" and state.sluice_batch_id == ""


def test_a_batch_that_failed_says_why() -> None:
    state = openai.read_batch(fixture("openai/batch_failed.json"))
    assert state.ended and state.status == "failed"
    assert state.error == "line 3: This line is not parseable as valid JSON.; The batch input file is empty."


@pytest.mark.parametrize("status", ["validating", "in_progress", "finalizing", "cancelling"])
def test_a_batch_not_yet_ended_runs(status: str) -> None:
    doc = msgspec.json.decode(fixture("openai/batch_completed.json"))
    state = openai.read_batch(msgspec.json.encode({**doc, "status": status}))
    assert not state.ended


def test_azure_answers_with_a_capitalised_status_and_null_counts() -> None:
    state = azure.read_batch(fixture("azure/batch_validating.json"))
    assert (state.status, state.ended, state.completed, state.failed) == ("validating", False, 0, 0)
    assert state.id == "batch_fe3f047a-de39-4068-9008-346795bfc1db"


def test_a_list_page_finds_the_batch_by_its_metadata_and_names_the_next_page() -> None:
    found, after = openai.read_list(fixture("openai/batch_list.json"))
    assert [s.sluice_batch_id for s in found] == ["batch_01JXAMPLE0000000000000000A", ""]
    assert after == "batch_abc456"
    doc = msgspec.json.decode(fixture("openai/batch_list.json"))
    assert openai.read_list(msgspec.json.encode({**doc, "has_more": False}))[1] == ""


def test_output_and_error_file_lines() -> None:
    first, second = (openai.read_line(line) for line in jsonl("openai/batch_output.jsonl"))
    assert first is not None and (first.custom_id, first.status) == ("request-2", 200)
    assert sent_json(first.body)["choices"][0]["message"]["content"] == "2 + 2 equals 4."
    assert second is not None and second.custom_id == "request-1"
    refused, expired, cancelled = (openai.read_line(line) for line in jsonl("openai/batch_errors.jsonl"))
    assert refused is not None and (refused.custom_id, refused.status) == ("request-3", 400)
    assert sent_json(refused.body)["error"]["code"] == "invalid_value"
    assert expired is None and cancelled is None  # never run: the driver ends them


def test_a_line_failed_without_an_http_answer_keeps_its_code() -> None:
    line = b'{"id": "r", "custom_id": "c", "response": null, "error": {"code": "server_error", "message": "boom"}}'
    answer = openai.read_line(line)
    assert answer is not None and answer.status == 500
    error = OpenAIChat().map_error(answer.status, answer.body, {})
    assert error.code == "server_error" and "boom" in error.message


def test_an_unreadable_line_names_its_custom_id_when_it_can() -> None:
    with pytest.raises(UnreadableLine) as cut:
        openai.read_line(b'{"id": "batch_req_1", "custom_id": "req \\"7\\"", "response": {"status_code": 200, "bo')
    assert cut.value.custom_id == 'req "7"'
    with pytest.raises(UnreadableLine) as nameless:
        openai.read_line(b'{"id": "batch_req_1", "response": ')
    assert nameless.value.custom_id == ""
    with pytest.raises(UnreadableLine):  # custom_id of the wrong type
        openai.read_line(b'{"custom_id": 7, "response": null, "error": null}')


# -- Azure -------------------------------------------------------------------
def test_azure_lines_name_the_deployment_and_the_path_under_it() -> None:
    direct = AzureOpenAIChat().build_request(AZURE, BODY, "az-key", stream=False).content
    line = sent_json(azure.line("task-0", "chat", direct))
    assert line["url"] == "/chat/completions" and line["body"]["model"] == "my-batch-4o"
    assert sent_json(azure.create_body("file-1", "chat", "b1"))["endpoint"] == "/chat/completions"
    assert azure.files_url(AZURE) == "https://res.openai.azure.test/openai/files?api-version=2024-10-21"
    assert azure.list_url(AZURE, "batch_9") == (
        "https://res.openai.azure.test/openai/batches?api-version=2024-10-21&limit=100&after=batch_9"
    )
    assert azure.file_content_url(AZURE, "file-1") == (
        "https://res.openai.azure.test/openai/files/file-1/content?api-version=2024-10-21"
    )
    assert azure.cancel_url(AZURE, "batch_1") == (
        "https://res.openai.azure.test/openai/batches/batch_1/cancel?api-version=2024-10-21"
    )
    assert azure.headers("az-key") == {"api-key": "az-key", "content-type": "application/json"}


# -- Anthropic ---------------------------------------------------------------
def test_anthropic_requests_wrap_the_params_the_messages_adapter_sends_alone() -> None:
    params = AnthropicChat().build_request(CLAUDE, BODY, "k", stream=False).content
    body = anthropic.opening() + anthropic.request("a-1", params, first=True)
    body += anthropic.request("a_2", params, first=False) + anthropic.closing()
    doc = sent_json(body)
    assert [r["custom_id"] for r in doc["requests"]] == ["a-1", "a_2"]
    assert doc["requests"][0]["params"] == sent_json(params)
    assert "stream" not in doc["requests"][0]["params"] and doc["requests"][0]["params"]["max_tokens"] == 50
    assert anthropic.batches_url(CLAUDE) == "https://api.anthropic.test/v1/messages/batches"
    assert (
        anthropic.results_url(CLAUDE, "msgbatch_1")
        == "https://api.anthropic.test/v1/messages/batches/msgbatch_1/results"
    )
    headers = anthropic.headers(CLAUDE, "k", json_body=False)
    assert headers == {"anthropic-version": "2023-06-01", "x-api-key": "k"}


def test_anthropic_custom_ids_are_checked_against_its_pattern() -> None:
    assert fits("my-first_request-1") and fits("x" * 64)
    assert not any(fits(v) for v in ("", "x" * 65, "a b", "doc:1", "é", "a.b"))


def test_a_message_batch_reads_as_running_then_ended() -> None:
    running = anthropic.read_batch(fixture("anthropic/message_batch.json"))
    assert (running.status, running.ended, running.completed) == ("in_progress", False, 0)
    ended = anthropic.read_batch(fixture("anthropic/message_batch_ended.json"))
    assert (ended.status, ended.ended, ended.completed, ended.failed) == ("ended", True, 2, 1)
    assert ended.id == "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF"


def test_message_batch_results() -> None:
    second, _first, errored, canceled, expired = (
        anthropic.read_line(x) for x in jsonl("anthropic/message_batch_results.jsonl")
    )
    assert second is not None and (second.custom_id, second.status) == ("my-second-request", 200)
    assert sent_json(second.body)["id"] == "msg_014VwiXbi91y3JMjcpyGBHX5"
    assert errored is not None and (errored.custom_id, errored.status) == ("my-third-request", 400)
    error = AnthropicChat().map_error(errored.status, errored.body, {})
    assert error.code == "invalid_request_error" and "max_tokens: Field required" in error.message
    assert canceled is None and expired is None


def test_an_errored_result_in_the_bare_error_shape_and_of_an_unknown_type() -> None:
    bare = b'{"custom_id":"x","result":{"type":"errored","error":{"type":"overloaded_error","message":"Overloaded"}}}'
    answer = anthropic.read_line(bare)
    assert answer is not None and answer.status == 529
    assert AnthropicChat().map_error(answer.status, answer.body, {}).retryable
    with pytest.raises(UnreadableLine) as odd:
        anthropic.read_line(b'{"custom_id":"y","result":{"type":"mystery"}}')
    assert odd.value.custom_id == "y"


# -- each line ended as a request -------------------------------------------
def test_an_answered_line_is_a_final_at_the_batch_price() -> None:
    answer = openai.read_line(jsonl("openai/batch_output.jsonl")[0])
    assert answer is not None
    end = line_end(OPENAI, "chat", answer)
    final = end.reply
    assert isinstance(final, Final) and end.custom_id == final.id == "request-2"
    assert final.message is not None and final.message.content == "2 + 2 equals 4."
    assert final.usage == Usage(prompt_tokens=24, completion_tokens=15, source="reported")
    full = usage_svc.cost_of(final.usage, "gpt-4o-mini")
    assert final.cost == native_batch.batch_cost(full) and final.cost.total == full.total // 2 > 0
    assert final.cost_pico_usd == final.cost.total
    assert (final.deployment, final.provider, final.attempts, final.finish_reason) == ("oa", "openai", 1, "stop")


def test_an_anthropic_answer_is_read_by_the_messages_adapter() -> None:
    answer = anthropic.read_line(jsonl("anthropic/message_batch_results.jsonl")[0])
    assert answer is not None
    final = line_end(CLAUDE, "chat", answer).reply
    assert isinstance(final, Final) and final.model == "claude-3-5-haiku-20241022"
    assert final.message is not None and str(final.message.content).startswith("Hello again!")
    assert final.usage.prompt_tokens == 11 and final.usage.completion_tokens == 36
    assert final.cost.total == usage_svc.cost_of(final.usage, CLAUDE.catalog_model).total // 2


def test_a_refused_line_is_a_failure_as_its_family_maps_it() -> None:
    answer = openai.read_line(jsonl("openai/batch_errors.jsonl")[0])
    assert answer is not None
    failure = line_end(OPENAI, "chat", answer).reply
    assert isinstance(failure, Failure) and failure.id == "request-3"
    assert (failure.status, failure.type, failure.code) == (400, "invalid_request_error", "invalid_value")
    assert failure.deployment == "oa" and failure.usage is None


def test_an_unreadable_answer_fails_its_line_alone() -> None:
    failure = line_end(OPENAI, "chat", LineAnswer("c1", 200, b'{"choices": "nope"}')).reply
    assert isinstance(failure, Failure) and (failure.status, failure.type) == (502, "upstream_error")
    assert "c1" in failure.message


def test_an_embeddings_line_keeps_its_vectors() -> None:
    body = b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-0.25]}],'
    body += b'"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}'
    final = line_end(EMBED, "embeddings", LineAnswer("e1", 200, body)).reply
    assert isinstance(final, Final) and final.embeddings == [[0.5, -0.25]]
    assert final.usage.prompt_tokens == 8 and final.cost.total == 8 * 20000 // 2


def test_an_answer_without_usage_counts_its_output() -> None:
    body = (
        b'{"id":"x","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},'
    )
    body += b'"finish_reason":"stop"}]}'
    final = line_end(OPENAI, "chat", LineAnswer("c", 200, body)).reply
    assert isinstance(final, Final) and final.usage.completion_tokens == 2 and final.usage.source == "counted"


# -- the results blob --------------------------------------------------------
def _final(cid: str, text: str = "ok") -> NativeLineEnd:
    usage = Usage(prompt_tokens=10, completion_tokens=5)
    return NativeLineEnd(
        cid, Final(id=cid, seq=0, model="m", usage=usage, message=Message(role="assistant", content=text))
    )


def test_the_blob_decodes_as_native_line_ends_and_keeps_the_first_of_twins() -> None:
    ends = EndsWriter(OPENAI, max_lines=10)
    for end in (_final("a"), _final("b"), _final("a", "twin")):
        ends.add(end)
    decoded = msgspec.msgpack.decode(bytes(ends.data()), type=NativeLineEnds).ends
    assert [e.custom_id for e in decoded] == ["a", "b"]
    assert isinstance(decoded[0].reply, Final) and decoded[0].reply.message is not None
    assert decoded[0].reply.message.content == "ok"
    empty = EndsWriter(OPENAI, max_lines=10)
    assert msgspec.msgpack.decode(bytes(empty.data()), type=NativeLineEnds).ends == []


def test_the_blob_holds_no_more_lines_than_the_batch_had() -> None:
    ends = EndsWriter(OPENAI, max_lines=2)
    for cid in "abc":
        ends.add(_final(cid))
    assert [e.custom_id for e in msgspec.msgpack.decode(bytes(ends.data()), type=NativeLineEnds).ends] == ["a", "b"]


def test_past_its_size_an_answer_is_kept_as_a_billed_failure() -> None:
    ends = EndsWriter(OPENAI, max_lines=10, max_bytes=600)
    big = _final("big", "x" * 2000)
    ends.add(_final("small"))
    ends.add(big)
    small, dropped = msgspec.msgpack.decode(bytes(ends.data()), type=NativeLineEnds).ends
    assert isinstance(small.reply, Final)
    assert isinstance(dropped.reply, Failure) and dropped.reply.code == "batch_results_too_large"
    assert isinstance(big.reply, Final)
    assert dropped.reply.usage == big.reply.usage and dropped.reply.cost == big.reply.cost


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_jsonl_lines_across_reads_with_crlf_and_a_line_too_long() -> None:
    stream = _chunks(b'{"a":1}\r\n\n{"b"', b":2}\n" + b"x" * 30, b"y" * 30 + b'\n{"c":3}', b"")
    got = [line async for line in jsonl_lines(stream, max_line=40)]
    assert got == [b'{"a":1}', b'{"b":2}', LineTooLong(b"x" * 30 + b"y" * 30), b'{"c":3}']


async def test_reading_results_lines_ends_what_can_be_named() -> None:
    lines = [
        *jsonl("openai/batch_output.jsonl"),
        b'{"id": "r9", "custom_id": "cut-9", "response": {"status_',
        b'{"nothing": "to name"}',
        LineTooLong(b'{"id": "r8", "custom_id": "long-8", "response": {"status_code": 200, "body": {"data": [[0.1, '),
        *jsonl("openai/batch_errors.jsonl"),
    ]

    async def source() -> AsyncIterator[bytes | LineTooLong]:
        for line in lines:
            yield line

    ends = EndsWriter(OPENAI, max_lines=100)
    await read_into(ends, source(), openai.read_line, "chat")
    decoded = {e.custom_id: e.reply for e in msgspec.msgpack.decode(bytes(ends.data()), type=NativeLineEnds).ends}
    assert sorted(decoded) == ["cut-9", "long-8", "request-1", "request-2", "request-3"]
    assert isinstance(decoded["request-1"], Final) and isinstance(decoded["request-3"], Failure)
    for cid in ("cut-9", "long-8"):
        failure = decoded[cid]
        assert isinstance(failure, Failure) and failure.status == 502 and cid in failure.message


def test_an_embeddings_body_is_what_the_embeddings_adapter_sends() -> None:
    body = EmbeddingsBody(model="alias", input=["a", "b"])
    direct = OpenAIChat().build_embeddings_request(EMBED, body, "sk").content
    line = sent_json(openai.line("e", "embeddings", direct))
    assert line["url"] == "/v1/embeddings" and line["body"] == sent_json(direct)
    assert line["body"]["encoding_format"] == "float"
