"""A mock LLM upstream for tests, demos and load tests (OpenAI, Anthropic and Gemini shapes)."""
