"""The OpenAI-shaped family beyond OpenAI itself: Azure, Mistral, and the
OpenAI-compatible servers behind one configurable adapter."""

from __future__ import annotations

import msgspec
import pytest

from schemas.chat import ChatBody, EmbeddingsBody
from schemas.envelope import Deployment
from schemas.errors import ContextLengthExceeded, InvalidRequest, UpstreamAuthFailed, UpstreamInvalidRequest
from services import config, model_config
from services.apis import chat
from services.providers import passthrough
from services.providers.registry import PROVIDERS, provider
from tests.adapters import call_with, fixture, message, sent_json, tools

BODY = ChatBody(
    model="alias",
    messages=[
        message(
            role="user",
            content=[
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
            ],
        )
    ],
    tools=tools({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}),
    tool_choice="required",
    response_format={"type": "json_object"},
    seed=7,
    max_completion_tokens=30,
    user="u",
)


def dep(name: str, **kw: str) -> Deployment:
    return Deployment(
        name="d",
        provider=name,
        base_url=kw.get("base_url", "https://up.test/v1"),
        upstream_model=kw.get("model", "m"),
        api_version=kw.get("api_version", ""),
    )


def test_openai_passes_tools_vision_and_response_format_through() -> None:
    sent = sent_json(provider("openai").chat.build_request(dep("openai"), BODY, "k", stream=False).content)
    assert sent["messages"] == msgspec.to_builtins(BODY.messages)
    assert sent["tools"] == msgspec.to_builtins(BODY.tools) and sent["tool_choice"] == "required"
    assert sent["response_format"] == {"type": "json_object"} and sent["seed"] == 7


# Function tools as OpenAI's reference writes them (name, description,
# parameters, strict), a custom tool, and each kind of tool_choice object.
TOOLS_JSON = (
    b'"tools":[{"type":"function","function":{"name":"f","description":"Finds.","parameters":{"type":"object",'
    b'"properties":{"q":{"type":"string"}},"required":["q"],"additionalProperties":false},"strict":true}},'
    b'{"type":"function","function":{"name":"g"}},'
    b'{"type":"custom","custom":{"name":"sql","description":"SQL.","format":{"type":"grammar",'
    b'"grammar":{"definition":"start: x","syntax":"lark"}}}}]'
)
CHOICES_JSON = [
    b'"tool_choice":"auto"',
    b'"tool_choice":{"type":"function","function":{"name":"f"}}',
    b'"tool_choice":{"type":"custom","custom":{"name":"sql"}}',
    b'"tool_choice":{"type":"allowed_tools","allowed_tools":{"mode":"required","tools":[{"type":"function",'
    b'"function":{"name":"f"}}]}}',
]


@pytest.mark.parametrize("choice", CHOICES_JSON)
def test_tools_and_tool_choice_reach_the_openai_family_byte_for_byte(choice: bytes) -> None:
    """Typed, a request's tools and tool choice encode as the JSON the client
    wrote: no body of the client's is kept for them, and the OpenAI family's
    upstreams get the same bytes."""
    raw = b'{"model":"m","messages":[{"role":"user","content":"hi"}],' + TOOLS_JSON + b"," + choice + b"}"
    parsed = chat.parse(raw)
    assert parsed.body is not None and parsed.raw == b""
    for name in ("openai", "azure", "groq"):
        sent = provider(name).chat.build_request(dep(name), parsed.body, "k", stream=False).content
        assert TOOLS_JSON + b"," + choice in sent


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "web_search_preview", "search_context_size": "low"},
        {"type": "function", "function": {"name": "f", "parameters": {}, "defer_loading": True}},
        {"type": "function", "function": {"name": "f", "strict": None}},
        {"type": "custom", "custom": {"name": "sql"}, "cache": "x"},
    ],
)
def test_a_tool_the_types_do_not_hold_whole_decodes_and_keeps_the_clients_body(tool: dict) -> None:
    """A tool of a type Sluice does not know (or with fields, or nulls, its
    type drops) is no 400 by itself: the client's own body rides along, and an
    OpenAI deployment gets the tool as written. Another family cannot take it."""
    doc = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
    parsed = chat.parse(msgspec.json.encode(doc))
    assert parsed.body is not None and parsed.body.tools and parsed.body.tools[0].type == tool["type"]
    assert msgspec.json.decode(parsed.raw) == doc
    native = passthrough.request(dep("openai"), parsed.raw, "k", stream=False)
    assert msgspec.json.decode(native.content)["tools"] == [tool]
    if tool["type"] != "function":
        with pytest.raises(InvalidRequest, match=f"tools\\[0\\] is of type '{tool['type']}'"):
            provider("anthropic").chat.build_request(dep("anthropic"), parsed.body, "k", stream=False)


def test_a_tool_choice_the_types_do_not_hold_whole_keeps_the_clients_body() -> None:
    for choice in ({"type": "allowed_tools"}, {"type": "web_search", "x": 1}, {"type": "function", "function": None}):
        doc = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": choice}
        parsed = chat.parse(msgspec.json.encode(doc))
        assert parsed.body is not None and (parsed.raw != b"") is (choice != {"type": "allowed_tools"})


async def test_openai_cached_and_reasoning_tokens_are_read() -> None:
    doc = msgspec.json.decode(fixture("openai/completion.json"))
    doc["usage"]["prompt_tokens_details"]["cached_tokens"] = 12
    doc["usage"]["completion_tokens_details"]["reasoning_tokens"] = 6
    d = dep("openai")
    d.catalog_model = "gpt-4.1"
    outcome, _, _ = await call_with(d, BODY, msgspec.json.encode(doc))
    assert (outcome.usage.cached_tokens, outcome.usage.reasoning_tokens) == (12, 6)
    # gpt-4.1: $2 in, $0.50 cached, $8 out per Mtok
    assert outcome.cost.input == 7 * 2_000_000 and outcome.cost.cached_input == 12 * 500_000
    assert outcome.cost.output == 10 * 8_000_000


def test_azure_puts_deployment_and_version_in_the_url_and_key_in_api_key() -> None:
    d = dep("azure", base_url="https://res.openai.azure.com", model="my-gpt4o", api_version="2024-06-01")
    req = provider("azure").chat.build_request(d, BODY, "az-key", stream=True)
    assert req.url == "https://res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-06-01"
    assert req.headers["api-key"] == "az-key" and "authorization" not in req.headers
    assert sent_json(req.content)["stream_options"] == {"include_usage": True}
    emb = provider("azure").embeddings.build_embeddings_request(d, EmbeddingsBody(model="e", input="x"), "az-key")
    assert emb.url.startswith("https://res.openai.azure.com/openai/deployments/my-gpt4o/embeddings?api-version=")


def test_mistral_renames_and_drops_what_it_does_not_take() -> None:
    sent = sent_json(provider("mistral").chat.build_request(dep("mistral"), BODY, "k", stream=True).content)
    assert sent["random_seed"] == 7 and "seed" not in sent
    assert sent["max_tokens"] == 30 and "max_completion_tokens" not in sent
    assert sent["tool_choice"] == "any"
    assert "user" not in sent and "stream_options" not in sent


async def test_mistral_tool_call_answer_and_422() -> None:
    outcome, _, _ = await call_with(dep("mistral"), BODY, fixture("mistral/completion.json"))
    assert outcome.finish_reason == "tool_calls" and outcome.message is not None
    assert outcome.message.tool_calls[0].function.name == "retrieve_payment_status"
    err = provider("mistral").chat.map_error(422, fixture("mistral/error_422.json"), {})
    assert isinstance(err, UpstreamInvalidRequest) and err.status == 422 and "Field required" in err.message


@pytest.mark.parametrize(
    ("name", "url", "key_env", "stream_usage"),
    [
        ("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY", True),
        ("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY", True),
        ("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", True),
        ("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", True),
        ("fireworks", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY", True),
        ("xai", "https://api.x.ai/v1", "XAI_API_KEY", True),
        ("perplexity", "https://api.perplexity.ai", "PERPLEXITY_API_KEY", False),
        ("vllm", "http://127.0.0.1:8000/v1", None, True),
        ("ollama", "http://127.0.0.1:11434/v1", None, True),
        ("lmstudio", "http://127.0.0.1:1234/v1", None, True),
    ],
)
def test_compatible_servers_are_one_adapter_with_their_defaults(
    name: str, url: str, key_env: str | None, stream_usage: bool
) -> None:
    p = PROVIDERS[name]
    assert p.family == "openai_compatible" and (p.base_url, p.api_key_env) == (url, key_env)
    d = model_config.deployment("x", model_config.ModelConfig(name="x", provider=name, upstream_model="some-model"))
    assert d.base_url == url and d.api_key_env == key_env
    req = p.chat.build_request(d, BODY, "k", stream=True)
    assert req.url == f"{url}/chat/completions"
    assert ("stream_options" in sent_json(req.content)) is stream_usage


async def test_groq_and_deepseek_usage_quirks() -> None:
    groq_stream = (
        b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
        b'"x_groq":{"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}}\n\ndata: [DONE]\n\n'
    )
    outcome, _, _ = await call_with(dep("groq"), BODY, groq_stream, stream=True)
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens, outcome.usage.source) == (9, 1, "reported")
    deepseek = (
        b'{"choices":[{"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":100,"completion_tokens":2,"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}}'
    )
    d = dep("deepseek")
    d.catalog_model = "deepseek-chat"
    outcome, _, _ = await call_with(d, BODY, deepseek)
    assert outcome.usage.cached_tokens == 64
    assert outcome.cost.input == 36 * 560_000 and outcome.cost.cached_input == 64 * 70_000


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            400,
            b'{"error":{"message":"This model\'s maximum context length is 8192 tokens.","type":'
            b'"invalid_request_error","code":"context_length_exceeded"}}',
            ContextLengthExceeded,
        ),
        (401, b'{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}', UpstreamAuthFailed),
        (400, b'{"error":"model \\"llama9\\" not found, try pulling it first"}', UpstreamInvalidRequest),
    ],
)
def test_error_bodies_of_the_family(status: int, body: bytes, kind: type) -> None:
    err = provider("openai").chat.map_error(status, body, {})
    assert type(err) is kind
    # An upstream that refuses our key is not the caller's 401.
    assert err.status != 401


def test_unknown_provider_and_missing_base_url_are_config_errors() -> None:
    with pytest.raises(config.ConfigError, match="unknown provider"):
        model_config.deployment("x", model_config.ModelConfig(name="x", provider="nope", upstream_model="m"))
    with pytest.raises(config.ConfigError, match="needs a base_url"):
        model_config.deployment("x", model_config.ModelConfig(name="x", provider="azure", upstream_model="m"))
    with pytest.raises(config.ConfigError, match="not in the catalog"):
        model_config.deployment(
            "x", model_config.ModelConfig(name="x", provider="openai", upstream_model="m", catalog_model="zzz")
        )
    found = model_config.deployment(
        "x", model_config.ModelConfig(name="x", provider="groq", upstream_model="llama-3.1-8b-instant")
    )
    assert found.catalog_model == "groq/llama-3.1-8b-instant"
    # Azure prices its own: its entry wins over OpenAI's for the same name.
    azure = model_config.ModelConfig(name="x", provider="azure", base_url="https://r", upstream_model="gpt-4o")
    assert model_config.deployment("x", azure).catalog_model == "azure/gpt-4o"
    keyless = model_config.ModelConfig(name="x", provider="openai", upstream_model="m", api_key_env="")
    assert model_config.deployment("x", keyless).api_key_env is None
