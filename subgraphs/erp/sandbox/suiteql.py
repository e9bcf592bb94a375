"""A useful subset of SuiteQL, parsed into parameterised SQLite over the sandbox's tables.

Supported::

    SELECT [DISTINCT] * | t.* | expr [[AS] alias], ...
    FROM table [alias] [[INNER | LEFT [OUTER]] JOIN table [alias] ON expr]...
    [WHERE expr] [GROUP BY expr, ...] [HAVING expr] [ORDER BY expr [ASC|DESC], ...]

Expressions: column references (``col`` or ``alias.col``, checked against the table), numbers, 'strings',
``+ - * / ||``, comparisons ``= <> != < <= > >=``, ``AND OR NOT``, ``[NOT] IN (...)``, ``IS [NOT] NULL``,
``[NOT] BETWEEN a AND b``, ``[NOT] LIKE``, ``CASE WHEN ... THEN ... [ELSE ...] END``, and the functions
SUM COUNT(*|[DISTINCT] x) MIN MAX AVG NVL COALESCE ROUND ABS UPPER LOWER TO_DATE TO_CHAR BUILTIN.DF,
SYSDATE / CURRENT_DATE. Literals always travel as SQL parameters — nothing from the query text is pasted
into SQL except checked identifiers. Dates are ISO strings (``TO_DATE('01/31/2026', 'MM/DD/YYYY')`` and
``TO_DATE('2026-01-31', 'YYYY-MM-DD')`` both become ``'2026-01-31'``). Paging comes from the URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from subgraphs.erp.sandbox.schema import columns_of, is_table, sql_table

KEYWORDS = frozenset(
    [
        "SELECT",
        "DISTINCT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "IS",
        "NULL",
        "BETWEEN",
        "LIKE",
        "GROUP",
        "BY",
        "ORDER",
        "ASC",
        "DESC",
        "AS",
        "JOIN",
        "INNER",
        "LEFT",
        "OUTER",
        "ON",
        "HAVING",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
    ]
)
AGGREGATES = {"SUM", "COUNT", "MIN", "MAX", "AVG"}
FUNCTIONS = {
    "NVL": "COALESCE",
    "COALESCE": "COALESCE",
    "ROUND": "ROUND",
    "ABS": "ABS",
    "UPPER": "UPPER",
    "LOWER": "LOWER",
    "BUILTIN.DF": "",
}
_TOKEN = re.compile(
    r"""\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>'(?:[^']|'')*')|(?P<id>[A-Za-z_][A-Za-z0-9_]*)
                        |(?P<op><>|!=|<=|>=|\|\||[=<>(),*+\-/.]))""",
    re.VERBOSE,
)
_FORMATS = {
    "YYYY-MM-DD": "%Y-%m-%d",
    "MM/DD/YYYY": "%m/%d/%Y",
    "DD.MM.YYYY": "%d.%m.%Y",
    "YYYYMMDD": "%Y%m%d",
}


class SuiteQLError(ValueError):
    pass


@dataclass
class Token:
    kind: str
    text: str

    @property
    def upper(self) -> str:
        return self.text.upper()


@dataclass
class Compiled:
    sql: str
    params: list[object]
    columns: list[str]


def tokenize(q: str) -> list[Token]:
    tokens, pos = [], 0
    q = q.rstrip().rstrip(";")
    while pos < len(q):
        if q[pos:].strip() == "":
            break
        m = _TOKEN.match(q, pos)
        if m is None:
            raise SuiteQLError(f"Unexpected character at position {pos}: {q[pos : pos + 10]!r}")
        kind = m.lastgroup or "op"
        tokens.append(Token(kind, m.group(kind)))
        pos = m.end()
    tokens.append(Token("eof", ""))
    return tokens


@dataclass
class Parser:
    tokens: list[Token]
    today: str
    pos: int = 0
    params: list[object] = field(default_factory=list)
    tables: dict[str, tuple[str, str]] = field(default_factory=dict)  # user alias → (table, sql alias)

    # -- token helpers -----------------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        token = self.peek()
        self.pos += 1
        return token

    def accept(self, *words: str) -> bool:
        token = self.peek()
        if (token.kind == "id" and token.upper in words) or (token.kind == "op" and token.text in words):
            self.pos += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.accept(word):
            raise SuiteQLError(f"Expected {word} but found {self.peek().text or 'end of query'!r}")

    def param(self, value: object) -> str:
        self.params.append(value)
        return "?"

    # -- statement ---------------------------------------------------------------------------------------
    def statement(self) -> Compiled:
        self.expect("SELECT")
        distinct = "DISTINCT " if self.accept("DISTINCT") else ""
        start = self.pos
        self._skip_select_list()
        self.expect("FROM")
        joins = [self.table_ref()]
        while self.peek().upper in ("JOIN", "INNER", "LEFT"):
            kind = "LEFT JOIN" if self.accept("LEFT") else "JOIN"
            self.accept("INNER")
            self.accept("OUTER")
            self.expect("JOIN")
            ref = self.table_ref()
            self.expect("ON")
            joins.append(f"{kind} {ref} ON {self.expr()}")
        from_end = self.pos
        # Parse the select list now that every alias is known; its params must come first.
        self.pos, tail_params, self.params = start, self.params, []
        columns, items = self.select_list()
        self.params.extend(tail_params)
        self.pos = from_end
        sql = f"SELECT {distinct}{', '.join(items)} FROM {' '.join(joins)}"
        if self.accept("WHERE"):
            sql += f" WHERE {self.expr()}"
        if self.accept("GROUP"):
            self.expect("BY")
            sql += " GROUP BY " + ", ".join(self.expr_list())
        if self.accept("HAVING"):
            sql += f" HAVING {self.expr()}"
        if self.accept("ORDER"):
            self.expect("BY")
            orders = []
            while True:
                term = self.expr()
                direction = " DESC" if self.accept("DESC") else (" ASC" if self.accept("ASC") else "")
                orders.append(term + direction)
                if not self.accept(","):
                    break
            sql += " ORDER BY " + ", ".join(orders)
        if self.peek().kind != "eof":
            raise SuiteQLError(f"Unexpected {self.peek().text!r}")
        return Compiled(sql, self.params, columns)

    def _skip_select_list(self) -> None:
        depth = 0
        while not (depth == 0 and self.peek().upper == "FROM"):
            token = self.next()
            if token.kind == "eof":
                raise SuiteQLError("Missing FROM")
            depth += {"(": 1, ")": -1}.get(token.text, 0)

    def table_ref(self) -> str:
        token = self.next()
        if token.kind != "id" or not is_table(token.text.lower()):
            raise SuiteQLError(f"Record '{token.text}' was not found.")
        table = token.text.lower()
        alias = table
        if (self.peek().kind == "id" and self.peek().upper not in KEYWORDS) or self.accept("AS"):
            alias = self.next().text.lower()
        sql_alias = f"t{len(self.tables)}"
        self.tables[alias] = (table, sql_alias)
        return f"{sql_table(table)} {sql_alias}"

    def select_list(self) -> tuple[list[str], list[str]]:
        columns: list[str] = []
        items: list[str] = []
        while True:
            if self.accept("*"):
                for table, sql_alias in self.tables.values():
                    for c in columns_of(table):
                        columns.append(c)
                        items.append(f"{sql_alias}.{c}")
            elif self.peek().kind == "id" and self.peek(1).text == "." and self.peek(2).text == "*":
                table, sql_alias = self._alias(self.next().text)
                self.pos += 2
                columns.extend(columns_of(table))
                items.extend(f"{sql_alias}.{c}" for c in columns_of(table))
            else:
                begin = self.pos
                sql = self.expr()
                plain = self.pos - begin == 1 or (
                    self.pos - begin == 3 and self.tokens[begin + 1].text == "."
                )
                name = self.tokens[self.pos - 1].text.lower() if plain else f"expr{len(columns) + 1}"
                if self.accept("AS") or (self.peek().kind == "id" and self.peek().upper not in KEYWORDS):
                    name = self.next().text.lower()
                columns.append(name)
                items.append(sql)
            if not self.accept(","):
                return columns, items

    def expr_list(self) -> list[str]:
        items = [self.expr()]
        while self.accept(","):
            items.append(self.expr())
        return items

    # -- expressions ---------------------------------------------------------------------------------------
    def expr(self) -> str:
        left = self.conjunction()
        while self.accept("OR"):
            left = f"({left} OR {self.conjunction()})"
        return left

    def conjunction(self) -> str:
        left = self.negation()
        while self.accept("AND"):
            left = f"({left} AND {self.negation()})"
        return left

    def negation(self) -> str:
        if self.accept("NOT"):
            return f"(NOT {self.negation()})"
        return self.predicate()

    def predicate(self) -> str:
        left = self.additive()
        if self.accept("IS"):
            is_not = self.accept("NOT")
            self.expect("NULL")
            return f"({left} IS {'NOT ' if is_not else ''}NULL)"
        negate = "NOT " if self.accept("NOT") else ""
        if self.accept("IN"):
            self.expect("(")
            values = self.expr_list()
            self.expect(")")
            return f"({left} {negate}IN ({', '.join(values)}))"
        if self.accept("BETWEEN"):
            low = self.additive()
            self.expect("AND")
            return f"({left} {negate}BETWEEN {low} AND {self.additive()})"
        if self.accept("LIKE"):
            return f"({left} {negate}LIKE {self.additive()})"
        if negate:
            raise SuiteQLError("NOT must be followed by IN, BETWEEN or LIKE here")
        token = self.peek()
        if token.kind == "op" and token.text in ("=", "<>", "!=", "<", "<=", ">", ">="):
            self.pos += 1
            op = "<>" if token.text == "!=" else token.text
            return f"({left} {op} {self.additive()})"
        return left

    def additive(self) -> str:
        left = self.multiplicative()
        while self.peek().text in ("+", "-", "||"):
            op = self.next().text
            left = f"({left} {op} {self.multiplicative()})"
        return left

    def multiplicative(self) -> str:
        left = self.unary()
        while self.peek().text in ("*", "/"):
            op = self.next().text
            left = f"({left} {op} {self.unary()})"
        return left

    def unary(self) -> str:
        if self.accept("-"):
            return f"(-{self.unary()})"
        return self.primary()

    def primary(self) -> str:
        token = self.next()
        if token.kind == "num":
            return self.param(float(token.text) if "." in token.text else int(token.text))
        if token.kind == "str":
            return self.param(token.text[1:-1].replace("''", "'"))
        if token.text == "(":
            inner = self.expr()
            self.expect(")")
            return f"({inner})"
        if token.kind != "id":
            raise SuiteQLError(f"Unexpected {token.text or 'end of query'!r}")
        word = token.upper
        if word == "NULL":
            return "NULL"
        if word in ("SYSDATE", "CURRENT_DATE"):
            return self.param(self.today)
        if word == "CASE":
            return self.case()
        if word == "BUILTIN" and self.peek().text == "." and self.peek(1).upper == "DF":
            self.pos += 2
            word = "BUILTIN.DF"
        if self.peek().text == "(":
            return self.call(word)
        if word in KEYWORDS:
            raise SuiteQLError(f"Unexpected keyword {token.text}")
        if self.accept("."):
            return self.column(token.text, self.next().text)
        return self.column(None, token.text)

    def case(self) -> str:
        parts = []
        while self.accept("WHEN"):
            condition = self.expr()
            self.expect("THEN")
            parts.append(f"WHEN {condition} THEN {self.expr()}")
        if not parts:
            raise SuiteQLError("CASE needs WHEN")
        if self.accept("ELSE"):
            parts.append(f"ELSE {self.expr()}")
        self.expect("END")
        return f"(CASE {' '.join(parts)} END)"

    def call(self, name: str) -> str:
        self.expect("(")
        if name in AGGREGATES:
            if name == "COUNT" and self.accept("*"):
                inner = "*"
            else:
                inner = ("DISTINCT " if self.accept("DISTINCT") else "") + self.expr()
            self.expect(")")
            return f"{name}({inner})"
        if name in ("TO_DATE", "TO_CHAR"):
            return self.date_function(name)
        if name not in FUNCTIONS:
            raise SuiteQLError(f"Unknown function {name}")
        args = self.expr_list()
        self.expect(")")
        if name == "BUILTIN.DF":
            return args[0]
        return f"{FUNCTIONS[name]}({', '.join(args)})"

    def date_function(self, name: str) -> str:
        start = self.pos
        value = self.expr()
        self.expect(",")
        fmt_token = self.next()
        self.expect(")")
        fmt = fmt_token.text[1:-1].upper() if fmt_token.kind == "str" else ""
        if name == "TO_CHAR":
            length = {"YYYY-MM-DD": 10, "YYYY-MM": 7, "YYYY": 4}.get(fmt)
            if length is None:
                raise SuiteQLError(f"Unsupported TO_CHAR format {fmt!r}")
            return f"SUBSTR({value}, 1, {length})"
        literal = self.tokens[start]
        if fmt not in _FORMATS or literal.kind != "str" or self.pos - start != 4:
            raise SuiteQLError("TO_DATE needs a string literal and a supported format")
        try:
            parsed = datetime.strptime(literal.text[1:-1], _FORMATS[fmt]).date()
        except ValueError as exc:
            raise SuiteQLError(f"Invalid date {literal.text} for format {fmt}") from exc
        self.params[-1] = parsed.isoformat()
        return value

    def column(self, alias: str | None, name: str) -> str:
        name = name.lower()
        if alias is not None:
            table, sql_alias = self._alias(alias)
            if name not in columns_of(table):
                raise SuiteQLError(f"Field '{name}' for record '{table}' was not found.")
            return f"{sql_alias}.{name}"
        owners = [(t, a) for t, a in self.tables.values() if name in columns_of(t)]
        if not owners:
            raise SuiteQLError(f"Field '{name}' was not found.")
        return f"{owners[0][1]}.{name}"

    def _alias(self, alias: str) -> tuple[str, str]:
        found = self.tables.get(alias.lower())
        if found is None:
            raise SuiteQLError(f"Unknown table alias '{alias}'")
        return found


def compile_query(q: str, today: str) -> Compiled:
    if not isinstance(q, str) or not q.strip():
        raise SuiteQLError("The query is empty.")
    return Parser(tokenize(q), today).statement()
