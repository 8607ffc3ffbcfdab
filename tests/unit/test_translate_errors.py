"""Every exception the upstream transport can raise becomes a gateway error at the boundary
(httpx has the same test for its transport): a new aiohttp exception class fails this test
until it is looked at."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from llm_gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from llm_gateway.upstream.mapping import TranslateErrors


def _subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _instance(cls: type[BaseException]) -> BaseException:
    """One instance of each aiohttp exception, with the arguments its constructor wants."""
    # The constructors differ; the connection key only feeds their messages.
    make: Any = cls
    key = None
    info = aiohttp.RequestInfo(URL("http://x/"), "GET", CIMultiDictProxy(CIMultiDict()))
    if issubclass(cls, aiohttp.ClientConnectorCertificateError):
        return make(key, ValueError("bad certificate"))  # type: ignore[no-any-return]
    if cls.__name__ == "UnixClientConnectorError":
        return make("/tmp/s", key, OSError(2, "gone"))  # type: ignore[no-any-return]
    if issubclass(cls, aiohttp.ClientConnectorError):
        return make(key, OSError(111, "refused"))  # type: ignore[no-any-return]
    if issubclass(cls, aiohttp.ClientResponseError):
        return make(info, (), status=500, message="bad")  # type: ignore[no-any-return]
    if issubclass(cls, aiohttp.InvalidURL):
        return make("nope://")  # type: ignore[no-any-return]
    if issubclass(cls, aiohttp.ServerFingerprintMismatch):
        return make(b"a", b"b", "x", 443)  # type: ignore[no-any-return]
    return cls("failed")


TRANSPORT_ERRORS = sorted(
    _subclasses(aiohttp.ClientError) | {aiohttp.ClientError}, key=lambda c: c.__name__
)


@pytest.mark.parametrize("cls", TRANSPORT_ERRORS, ids=lambda c: c.__name__)
def test_every_aiohttp_error_is_mapped(cls: type[BaseException]) -> None:
    original = _instance(cls)
    with pytest.raises(UpstreamError) as mapped, TranslateErrors("POST /chat/completions", 5):
        raise original
    assert mapped.value.__cause__ is original
    expected = UpstreamTimeout if isinstance(original, TimeoutError) else UpstreamUnreachable
    assert type(mapped.value) is expected
    assert mapped.value.retryable


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        (TimeoutError(), UpstreamTimeout),
        (TimeoutError(), UpstreamTimeout),
        (ConnectionResetError(104, "reset"), UpstreamUnreachable),
        (OSError(113, "no route"), UpstreamUnreachable),
    ],
)
def test_asyncio_and_os_errors_are_mapped(
    original: BaseException, expected: type[UpstreamError]
) -> None:
    with pytest.raises(expected), TranslateErrors("GET /models", 5):
        raise original


def test_a_timeout_says_what_and_how_long() -> None:
    with (
        pytest.raises(UpstreamTimeout, match=r"GET /models within 2.5s"),
        TranslateErrors("GET /models", 2.5),
    ):
        raise TimeoutError


def test_our_own_errors_and_bugs_pass_through_unchanged() -> None:
    with pytest.raises(UpstreamTimeout, match="already mapped"), TranslateErrors("x", 1):
        raise UpstreamTimeout("already mapped")
    with pytest.raises(KeyError), TranslateErrors("x", 1):
        raise KeyError("a bug of ours is not an upstream failure")
