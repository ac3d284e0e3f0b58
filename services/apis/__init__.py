"""The client APIs the gateway speaks: one module each parses a request body
into the unified request and renders bus replies in that API's shape
(OpenAI's chat completions and embeddings, Anthropic's Messages). Every
front door (HTTP today, WebSocket and prompt APIs next) uses the same table,
``services.apis.table.BY_PATH``."""
