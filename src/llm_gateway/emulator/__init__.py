"""An OpenRouter emulator: the real wire format and its quirks, timed latency, injectable faults.

It stands alone (imports nothing else from `llm_gateway`) so that tests, `make run` without a key
and the benchmark can all use it as a known, deterministic upstream.

>>> from llm_gateway.emulator import Emulator, EmulatorConfig
>>> emulator = Emulator(EmulatorConfig(seed=1, time_scale=0.1))
>>> emulator.app.state.emulator is emulator
True
"""

from __future__ import annotations

from llm_gateway.emulator.app import Emulator, create_emulator_app
from llm_gateway.emulator.config import EmulatorConfig, ModelProfile
from llm_gateway.emulator.state import RequestRecord

__all__ = ["Emulator", "EmulatorConfig", "ModelProfile", "RequestRecord", "create_emulator_app"]
