"""llm-gateway: a fast, reliable gateway and benchmark for OpenRouter-compatible LLM APIs."""

__version__ = "0.1.0"
