"""A parser for the SOQL subset the gateway uses, translated to parameterised SQLite.

Grammar (keywords and names case-insensitive)::

    query     := SELECT path ("," path)* FROM name [WHERE cond] [ORDER BY order ("," order)*]
                 [LIMIT int] [OFFSET int]
    path      := Field | Relationship "." Field           -- one parent hop: Account.Name
    cond      := and (OR and)*
    and       := not (AND not)*
    not       := NOT not | "(" cond ")" | path op literal | path [NOT] IN "(" literal ("," literal)* ")"
                 | path LIKE 'pattern'
    op        := = | != | <> | < | > | <= | >=
    literal   := 'string' | number | 2026-11-27 | 2026-11-27T10:00:00Z | TRUE | FALSE | NULL
    order     := path [ASC | DESC] [NULLS (FIRST | LAST)]

Literal values only ever travel as SQL parameters; identifiers are resolved against the schema first, so
nothing a caller types reaches the SQL text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from subgraphs.crm.sandbox.schema import (
    BOOL,
    DATE,
    DT,
    NUM,
    Field,
    SfError,
    SObject,
    format_datetime,
    parse_datetime,
    sobject,
)

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
""",
    re.VERBOSE,
)
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "'": "'",
    '"': '"',
    "\\": "\\",
    "%": "\\%",
    "_": "\\_",
}
_KEYWORDS = {
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "ORDER",
    "BY",
    "ASC",
    "DESC",
    "NULLS",
    "FIRST",
    "LAST",
    "LIMIT",
    "OFFSET",
    "TRUE",
    "FALSE",
    "NULL",
}
_KIND_OF_TYPE = {NUM: "number", DATE: "date", DT: "datetime", BOOL: "boolean"}


def malformed(message: str) -> SfError:
    return SfError(400, "MALFORMED_QUERY", message)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str

    @property
    def keyword(self) -> str | None:
        upper = self.text.upper()
        return upper if self.kind == "name" and upper in _KEYWORDS else None


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise malformed(f"unexpected character at position {pos}: {text[pos : pos + 20]!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group()))
    return tokens


@dataclass(frozen=True)
class Column:
    """One selected field: where it lands in the record (``rel`` is the relationship name or None)."""

    field: Field
    rel: Field | None
    sql: str


@dataclass
class Compiled:
    sobject: SObject
    sql: str
    params: list[Any]
    columns: list[Column]
    parents: dict[str, str] = field(default_factory=dict)  # relationship name → SQL of the parent Id


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0
        self.params: list[Any] = []
        self.joins: dict[str, tuple[str, Field, SObject]] = {}  # rel name → (alias, ref field, parent)
        self.obj: SObject | None = None

    # -- token helpers -----------------------------------------------------------------------------
    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def next(self, what: str) -> Token:
        token = self.peek()
        if token is None:
            raise malformed(f"unexpected end of query, expecting {what}")
        self.pos += 1
        return token

    def accept(self, *keywords: str) -> bool:
        token = self.peek()
        if token is not None and (
            token.keyword in keywords or (token.kind == "punct" and token.text in keywords)
        ):
            self.pos += 1
            return True
        return False

    def expect(self, keyword: str) -> None:
        if not self.accept(keyword):
            token = self.peek()
            raise malformed(f"expecting '{keyword}', found {token.text if token else 'end of query'!r}")

    # -- grammar -----------------------------------------------------------------------------------
    def parse(self) -> Compiled:
        self.expect("SELECT")
        paths = [self.name_token("field")]
        while self.accept(","):
            paths.append(self.name_token("field"))
        self.expect("FROM")
        self.obj = self.resolve_object(self.name_token("sObject"))
        columns = self.columns(paths)
        where = ""
        if self.accept("WHERE"):
            where = " WHERE " + self.condition()
        orders: list[str] = []
        if self.accept("ORDER"):
            self.expect("BY")
            orders.append(self.order())
            while self.accept(","):
                orders.append(self.order())
        orders.append("t0.rowid")  # a stable order for paging even when the caller gives none
        limit = self.integer("LIMIT") if self.accept("LIMIT") else -1
        offset = self.integer("OFFSET") if self.accept("OFFSET") else 0
        if self.peek() is not None:
            raise malformed(f"unexpected token: {self.next('end').text!r}")
        parents = {rel: f'{alias}."Id"' for rel, (alias, _, _) in self.joins.items()}
        select = ", ".join(['t0."Id"', *(c.sql for c in columns), *parents.values()])
        joins = "".join(
            f' LEFT JOIN "{parent.name}" AS {alias} ON {alias}."Id" = t0."{ref.name}"'
            for alias, ref, parent in self.joins.values()
        )
        sql = (
            f'SELECT {select} FROM "{self.obj.name}" AS t0{joins}{where} ORDER BY {", ".join(orders)}'
            f" LIMIT ? OFFSET ?"
        )
        return Compiled(self.obj, sql, [*self.params, limit, offset], columns, parents)

    def name_token(self, what: str) -> str:
        token = self.next(what)
        if token.kind != "name" or token.keyword is not None:
            raise malformed(f"expecting a {what} name, found {token.text!r}")
        return token.text

    def integer(self, keyword: str) -> int:
        token = self.next("a number")
        if token.kind != "number" or not token.text.isdigit():
            raise malformed(f"{keyword} needs a non-negative integer, found {token.text!r}")
        return int(token.text)

    def resolve_object(self, name: str) -> SObject:
        try:
            return sobject(name)
        except SfError as exc:
            raise SfError(400, "INVALID_TYPE", f"sObject type '{name}' is not supported.") from exc

    def resolve(self, path: str) -> tuple[Field, Field | None, str]:
        """Field, relationship (or None) and the SQL naming it; one parent hop at most."""
        if self.obj is None:
            raise malformed("a field path before FROM")
        parts = path.split(".")
        if len(parts) == 1:
            found = self.obj.field(parts[0])
            if found is None:
                raise _invalid_field(parts[0], self.obj.name)
            return found, None, f't0."{found.name}"'
        if len(parts) != 2:
            raise malformed(f"only one relationship hop is supported: {path}")
        ref = self.obj.relationship(parts[0])
        if ref is None or ref.ref is None or ref.rel is None:
            raise SfError(400, "INVALID_FIELD", f"Didn't understand relationship '{parts[0]}' in field path.")
        parent = sobject(ref.ref)
        target = parent.field(parts[1])
        if target is None:
            raise _invalid_field(parts[1], parent.name)
        if ref.rel not in self.joins:
            self.joins[ref.rel] = (f"r{len(self.joins) + 1}", ref, parent)
        return target, ref, f'{self.joins[ref.rel][0]}."{target.name}"'

    def columns(self, paths: list[str]) -> list[Column]:
        seen: dict[tuple[str | None, str], Column] = {}
        for path in paths:
            target, rel, sql = self.resolve(path)
            seen.setdefault((rel.rel if rel else None, target.name), Column(target, rel, sql))
        return list(seen.values())

    def condition(self) -> str:
        parts = [self.conjunction()]
        while self.accept("OR"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def conjunction(self) -> str:
        parts = [self.negation()]
        while self.accept("AND"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def negation(self) -> str:
        if self.accept("NOT"):
            return f"(NOT {self.negation()})"
        if self.accept("("):
            inner = self.condition()
            self.expect(")")
            return f"({inner})"
        return self.comparison()

    def comparison(self) -> str:
        target, _, column = self.resolve(self.name_token("field"))
        negate = self.accept("NOT")
        if self.accept("IN"):
            self.expect("(")
            values = [self.literal(target)]
            while self.accept(","):
                values.append(self.literal(target))
            self.expect(")")
            if any(v is None for v in values):
                raise malformed("NULL is not allowed in an IN list")
            self.params.extend(values)
            return f"{column} {'NOT ' if negate else ''}IN ({', '.join('?' * len(values))})"
        if negate:
            raise malformed("NOT must be followed by IN here")
        if self.accept("LIKE"):
            if target.type not in ("string", "id", "reference"):
                raise malformed(f"LIKE needs a text field, {target.name} is {target.type}")
            token = self.next("a pattern")
            if token.kind != "string":
                raise malformed("LIKE needs a quoted pattern")
            self.params.append(_unquote(token.text))
            # Salesforce LIKE is case-insensitive, as SQLite's is for ASCII.
            return f"{column} LIKE ? ESCAPE '\\'"
        token = self.next("an operator")
        if token.kind != "op":
            raise malformed(f"expecting an operator after {target.name}, found {token.text!r}")
        value = self.literal(target)
        op = "!=" if token.text == "<>" else token.text
        if value is None:
            if op not in ("=", "!="):
                raise malformed(f"NULL can only be compared with = or !=, not {op}")
            return f"{column} IS {'NOT ' if op == '!=' else ''}NULL"
        self.params.append(value)
        return f"{column} {op} ?"

    def literal(self, target: Field) -> Any:
        token = self.next("a value")
        keyword = token.keyword
        if keyword == "NULL":
            return None
        kind = {"string": "string", "number": "number", "date": "date", "datetime": "datetime"}.get(
            token.kind
        )
        if keyword in ("TRUE", "FALSE"):
            kind = "boolean"
        expected = _KIND_OF_TYPE.get(target.type, "string")
        if kind is None:
            raise malformed(f"expecting a value for {target.name}, found {token.text!r}")
        if kind != expected:
            raise malformed(
                f"value of filter criterion for field '{target.name}' must be of type "
                f"{expected}, found {token.text}"
            )
        if kind == "string":
            return _unquote(token.text)
        if kind == "number":
            return float(Decimal(token.text))
        if kind == "boolean":
            return int(keyword == "TRUE")
        if kind == "datetime":
            return format_datetime(parse_datetime(token.text))
        return token.text

    def order(self) -> str:
        _, _, column = self.resolve(self.name_token("field"))
        direction = "ASC"
        if self.accept("DESC"):
            direction = "DESC"
        else:
            self.accept("ASC")
        nulls = ""
        if self.accept("NULLS"):
            if not self.accept("FIRST"):
                self.expect("LAST")
                nulls = " NULLS LAST"
            else:
                nulls = " NULLS FIRST"
        return f"{column} {direction}{nulls}"


def _invalid_field(name: str, obj: str) -> SfError:
    return SfError(
        400,
        "INVALID_FIELD",
        f"No such column '{name}' on entity '{obj}'. If you are attempting "
        "to use a custom field, be sure to append the '__c' after the custom field name.",
        [name],
    )


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def compile_soql(text: str) -> Compiled:
    """``SELECT Id, Account.Name FROM Opportunity WHERE Amount > 100`` → parameterised SQL."""
    return _Parser(text).parse()
