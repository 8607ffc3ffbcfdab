"""How the reports write numbers; "-" for a number that is absent."""

from __future__ import annotations


def ms(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    sign = "+" if signed and value >= 0 else ""
    if abs(value) >= 100:
        return f"{sign}{value:,.0f} ms"
    if abs(value) >= 10:
        return f"{sign}{value:.1f} ms"
    return f"{sign}{value:.2f} ms"


def rps(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} req/s"


def mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} MB"


def kb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} KB"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def ratio(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}x"
