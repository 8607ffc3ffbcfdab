"""Fixtures for the emulator's own tests: clients of the shared emulator, and private emulators.

The session emulator (tests/conftest.py) runs at time_scale 0.05 with 50 ms keep-alives; tests
that need other settings start their own with `start_emulator(**config)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from llm_gateway.emulator import Emulator, EmulatorConfig
from tests.servers import serve

AUTH = {"Authorization": "Bearer sk-or-v1-emulator-tests"}
CHAT = "/api/v1/chat/completions"

StartEmulator = Callable[..., tuple[Emulator, httpx.AsyncClient]]


def chat_body(
    model: str = "emulator/fast", content: str = "Say hello", **extra: Any
) -> dict[str, Any]:
    """A minimal chat request body."""
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture
def base_url(emulator_url: str) -> str:
    """Root URL of the shared emulator (control routes live outside /api/v1)."""
    return emulator_url.removesuffix("/api/v1")


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An authorised client of the shared emulator."""
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=10) as client:
        yield client


@pytest.fixture
async def start_emulator() -> AsyncIterator[StartEmulator]:
    """`emulator, client = start_emulator(**config)`: a private emulator and an authorised client,
    both closed when the test ends."""
    with ExitStack() as stack:
        clients: list[httpx.AsyncClient] = []

        def start(**config: Any) -> tuple[Emulator, httpx.AsyncClient]:
            emulator = Emulator(EmulatorConfig(**config))
            url = stack.enter_context(serve(emulator.app))
            client = httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10)
            clients.append(client)
            return emulator, client

        yield start
        for client in clients:
            await client.aclose()
