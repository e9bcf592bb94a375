"""Cursor connections (Relay style) over lists filtered to what the caller may see.

Rows of legal entities the principal cannot see are removed *before* paging, so they are neither
returned nor counted. Cursors are opaque: base64 of the position in the filtered, ordered list
(``paginate``, for lists read whole), or of the last row's ERP internal id (``keyed``, for lists the ERP
pages with ``id > cursor``). A cursor of one kind is refused by a list of the other.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar, overload

import strawberry

from canonical.errors import Problem, ValidationFailed

T = TypeVar("T")
R = TypeVar("R")
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


Count = Callable[[], Awaitable[int]]


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    count: strawberry.Private[Count]  # awaited only when totalCount is asked for

    @strawberry.field
    async def total_count(self) -> int:
        return await self.count()


def counted(n: int) -> Count:
    async def count() -> int:
        return n

    return count


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


def encode_key_cursor(erp_id: int) -> str:
    return base64.urlsafe_b64encode(f"p2c:k:{erp_id}".encode()).decode()


def decode_key_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        prefix, kind, number = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        if (prefix, kind) != ("p2c", "k"):
            raise ValueError(cursor)
        return int(number)
    except ValueError as exc:
        raise ValidationFailed([Problem("after", "is not a cursor of this list", "INVALID_CURSOR")]) from exc


def check_page_size(first: int) -> None:
    if first > MAX_PAGE_SIZE or first < 0:
        raise ValidationFailed(
            [Problem("first", f"must be between 0 and {MAX_PAGE_SIZE} (the page size cap)", "PAGE_SIZE")],
            subject=f"page size cap is {MAX_PAGE_SIZE}",
        )


@overload
def paginate(rows: Sequence[T], first: int, after: str | None) -> Connection[T]: ...


@overload
def paginate(rows: Sequence[R], first: int, after: str | None, node: Callable[[R], T]) -> Connection[T]: ...


def paginate(
    rows: Sequence[Any], first: int, after: str | None, node: Callable[[Any], Any] | None = None
) -> Connection[Any]:
    """The page of ``rows`` after the cursor; ``node`` maps only the rows of the page (not the whole list)."""
    check_page_size(first)
    start = decode_cursor(after) + 1 if after else 0
    window = rows[start : start + first]
    if node is not None:
        window = [node(row) for row in window]
    edges = [Edge(cursor=encode_cursor(start + i), node=row) for i, row in enumerate(window)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=start + first < len(rows), end_cursor=edges[-1].cursor if edges else None
        ),
        count=counted(len(rows)),
    )


def keyed(nodes: Sequence[tuple[int, T]], *, more: bool, count: Count) -> Connection[T]:
    """A page the ERP cut (``id > cursor``, ``first + 1`` rows): ``nodes`` with their internal ids."""
    edges = [Edge(cursor=encode_key_cursor(erp_id), node=node) for erp_id, node in nodes]
    return Connection(
        edges=edges,
        page_info=PageInfo(has_next_page=more, end_cursor=edges[-1].cursor if edges else None),
        count=count,
    )
