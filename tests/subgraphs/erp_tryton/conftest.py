from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.subgraphs.erp_tryton.tryton_support import Server, tryton_server


@pytest.fixture(scope="module")
def tryton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real trytond on a free port over this module's own copy of the built demo database."""
    with tryton_server(tmp_path_factory.mktemp("tryton")) as server:
        yield server
