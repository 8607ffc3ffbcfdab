"""Secrets never leave the process: the one place that knows what to scrub and how.

The secrets are the upstream key and the inbound keys. An upstream can echo what it was sent
(a misconfigured proxy puts the `Authorization` header into its error message), so every text
an upstream provides is scrubbed before it reaches a client, a file or the log:
- error messages (answers, in-band stream errors, benchmark rows and reports, log lines) lose
  the secrets and any `Bearer <token>`;
- completions lose the secrets only: a model may well write "Bearer abc" in an answer about
  HTTP, and that is content, not a leak.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, TypeVar

from llm_gateway.errors import GatewayError

E = TypeVar("E", bound=GatewayError)

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
MASK = "***"


class Redactor:
    """Scrubs the given secrets (and, from messages, bearer tokens) from text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._encoded = [(s.encode(), MASK.encode()) for s in self._secrets]

    def __call__(self, message: str) -> str:
        """A message (an error, a log line) without secrets or bearer tokens."""
        message = self.content(message)
        if "earer" in message or "EARER" in message:  # cheaper than the regex on every line
            message = _BEARER.sub(r"\1" + MASK, message)
        return message

    def content(self, text: str) -> str:
        """Generated text without the secrets (bearer-looking tokens are left alone)."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def error(self, error: E) -> E:
        """`error` with its message scrubbed (before it is raised on towards a client)."""
        error.message = self(error.message)
        error.args = (error.message,)
        return error

    def json(self, value: Any) -> Any:
        """A parsed JSON value with the secrets scrubbed from every string in it (the same
        object when there were none). For text that reached JSON as escapes (`\\u0074...`):
        the bytes did not show it, the decoded strings do."""
        if isinstance(value, str):
            return self.content(value)
        if isinstance(value, list):
            items = [self.json(item) for item in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        if isinstance(value, dict):
            pairs = {self.json(k): self.json(v) for k, v in value.items()}
            same = all(a is b for a, b in zip(pairs.values(), value.values(), strict=True))
            return value if same and pairs.keys() == value.keys() else pairs
        return value

    def content_bytes(self, data: bytes) -> bytes:
        """`content` for encoded text (a passthrough's bytes); usually returns `data` itself."""
        for secret, mask in self._encoded:
            if secret in data:
                data = data.replace(secret, mask)
        return data
