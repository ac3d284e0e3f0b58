"""The HTTP front door: OpenAI-compatible endpoints over bare ASGI."""
