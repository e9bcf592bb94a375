"""Tryton's JSON-RPC payloads: the envelope, and tagged values both ways.

    encode({"date": date(2026, 11, 3), "duration": timedelta(hours=3), "price": Decimal("100.00")})
    → {"date": {"__class__": "date", "year": 2026, "month": 11, "day": 3},
       "duration": {"__class__": "timedelta", "seconds": 10800.0},
       "price": {"__class__": "Decimal", "decimal": "100.00"}}

``decode`` is the inverse (it also turns ``bytes`` and ``datetime`` tags back into Python values). A domain
is a list of ``[field, operator, value]`` clauses; writes of one2many fields are ``[["create", [...]]]``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeAlias

Record: TypeAlias = dict[str, Any]
Domain: TypeAlias = list[Any]
Context: TypeAlias = dict[str, Any]


def encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {
            "__class__": "datetime", "year": value.year, "month": value.month, "day": value.day,
            "hour": value.hour, "minute": value.minute, "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, time):
        return {"__class__": "time", "hour": value.hour, "minute": value.minute, "second": value.second,
                "microsecond": value.microsecond}
    if isinstance(value, timedelta):
        return {"__class__": "timedelta", "seconds": value.total_seconds()}
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, bytes):
        return {"__class__": "bytes", "base64": base64.b64encode(value).decode()}
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def _tagged(value: Mapping[str, Any]) -> Any:
    kind = value["__class__"]
    if kind == "date":
        return date(value["year"], value["month"], value["day"])
    if kind == "datetime":
        return datetime(value["year"], value["month"], value["day"], value.get("hour", 0),
                        value.get("minute", 0), value.get("second", 0), value.get("microsecond", 0))
    if kind == "time":
        return time(value.get("hour", 0), value.get("minute", 0), value.get("second", 0),
                    value.get("microsecond", 0))
    if kind == "timedelta":
        return timedelta(seconds=float(value["seconds"]))
    if kind == "Decimal":
        return Decimal(value["decimal"])
    if kind == "bytes":
        return base64.b64decode(value["base64"])
    return {k: decode(v) for k, v in value.items()}


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        return _tagged(value) if "__class__" in value else {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def request(method: str, params: list[Any], request_id: int = 0) -> Record:
    return {"id": request_id, "method": method, "params": encode(params)}


def hours(duration: timedelta | None) -> Decimal:
    if duration is None:
        return Decimal(0)
    return (Decimal(str(duration.total_seconds())) / Decimal(3600)).quantize(Decimal("0.01"))


def one2many_create(rows: list[Record]) -> list[Any]:
    return [["create", rows]]
