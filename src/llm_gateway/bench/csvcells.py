"""Text cells of the CSV files the benchmark writes and reads.

Written: `benchmark_results.csv` carries text from outside (prompts, model ids, the upstream's
error messages, the start of each answer), and a spreadsheet runs a cell that starts with `=`,
`+`, `-`, `@`, a tab or a carriage return as a formula (OWASP's "CSV injection"). Such a text
cell is written with a leading single quote, which spreadsheets take as "this is text". A text
cell that already starts with a quote gets one more, so reading strips exactly one quote from
any text cell that starts with one, and every value reads back as it was. Numbers are not text
cells and are written as they are: -2 stays a number.

Read: Python's csv refuses fields over 128 KiB by default, and a prompt may be longer. Whoever
reads a CSV raises that limit first (never lowers it); importing the package changes nothing.
"""

from __future__ import annotations

import csv

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
MAX_FIELD_CHARS = 64 * 1024 * 1024


def protect(text: str) -> str:
    """The cell to write for `text`: quoted when a spreadsheet could run it, or when it
    starts with the quote itself (so `restore` can always strip exactly one)."""
    return QUOTE + text if text.startswith((*FORMULA_STARTS, QUOTE)) else text


def restore(cell: str) -> str:
    """The text a cell written by `protect` holds."""
    return cell[1:] if cell.startswith(QUOTE) else cell


def allow_long_fields() -> None:
    """Let csv read fields up to MAX_FIELD_CHARS (the limit is process-wide: only raised)."""
    if csv.field_size_limit() < MAX_FIELD_CHARS:
        csv.field_size_limit(MAX_FIELD_CHARS)
