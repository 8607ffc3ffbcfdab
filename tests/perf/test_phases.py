"""What the phases measure, decided from the options alone (no servers started)."""

from __future__ import annotations

from phase_capacity import KEYS, keys, labels
from result import Options


def test_the_capacity_phase_runs_each_route_again_on_several_workers() -> None:
    assert keys(Options()) == [*KEYS, "gateway_workers2", "gateway_generate_workers2"]
    assert keys(Options(capacity_workers=4))[-1] == "gateway_generate_workers4"
    assert keys(Options(capacity_workers=1)) == list(KEYS)

    one = {"gateway": "llm-gateway `/v1/chat/completions`", "gateway_generate": "`/generate`"}
    assert labels(Options(), one) == {
        "gateway_workers2": "llm-gateway `/v1/chat/completions`, 2 workers",
        "gateway_generate_workers2": "`/generate`, 2 workers",
    }
    assert labels(Options(capacity_workers=1), one) == {}
