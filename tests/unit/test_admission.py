"""`Admission` alone: the count, the refusal, and that a refusal starts nothing."""

from __future__ import annotations

import pytest

from llm_gateway.admission import Admission
from llm_gateway.errors import Overloaded
from llm_gateway.metrics import GatewayMetrics


def test_requests_beyond_the_limit_are_refused_and_counted() -> None:
    metrics = GatewayMetrics()
    admission = Admission(2, metrics)
    admission.enter()
    admission.enter()
    with pytest.raises(Overloaded) as refused:
        admission.enter()
    assert refused.value.headers() == {"Retry-After": "1"}
    assert admission.in_flight == 2  # the refused one was never counted in
    admission.leave()
    admission.enter()  # room again
    text = metrics.render().decode()
    assert "llm_gateway_in_flight_requests 2.0" in text
    assert 'llm_gateway_rejected_requests_total{reason="overloaded"} 1.0' in text
