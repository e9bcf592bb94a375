"""Cursor connections (Relay style) over lists already filtered to what the caller may see.

Rows of legal entities the principal cannot see are removed *before* paging, so they are neither
returned nor counted. Cursors are opaque (base64 of the position in the filtered, ordered list).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Generic, TypeVar

import strawberry

from canonical.errors import Problem, ValidationFailed

T = TypeVar("T")
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    total_count: int


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"p2c:{position}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        prefix, _, number = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if prefix != "p2c":
            raise ValueError(cursor)
        return int(number)
    except ValueError as exc:
        raise ValidationFailed([Problem("after", "is not a cursor of this graph", "INVALID_CURSOR")]) from exc


def check_page_size(first: int) -> None:
    if first > MAX_PAGE_SIZE or first < 0:
        raise ValidationFailed(
            [Problem("first", f"must be between 0 and {MAX_PAGE_SIZE} (the page size cap)", "PAGE_SIZE")],
            subject=f"page size cap is {MAX_PAGE_SIZE}",
        )


def paginate(rows: Sequence[T], first: int, after: str | None) -> Connection[T]:
    check_page_size(first)
    start = decode_cursor(after) + 1 if after else 0
    window = rows[start : start + first]
    edges = [Edge(cursor=encode_cursor(start + i), node=row) for i, row in enumerate(window)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=start + first < len(rows), end_cursor=edges[-1].cursor if edges else None
        ),
        total_count=len(rows),
    )
