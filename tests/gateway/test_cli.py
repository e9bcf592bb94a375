"""The ``p2c`` console script, run as a user runs it (subprocess), checking its error boundary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

P2C = Path(sys.executable).with_name("p2c")


def p2c(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("P2C_")} | (env or {})
    return subprocess.run(
        [str(P2C), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=120, check=False
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = p2c("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("serve", "migrate", "sandbox", "token"):
        assert command in result.stdout


def test_migrate_sqlite_file(tmp_path: Path) -> None:
    target = tmp_path / "x.sqlite"
    result = p2c("migrate", "--database-url", f"sqlite+aiosqlite:///{target}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert target.exists()
    assert "at revision " in result.stdout
    assert "at revision None" not in result.stdout
    again = p2c("migrate", "--database-url", f"sqlite+aiosqlite:///{target}", cwd=tmp_path)
    assert again.returncode == 0
    assert again.stdout == result.stdout


def test_migrate_defaults_to_a_file_in_the_working_directory(tmp_path: Path) -> None:
    result = p2c("migrate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "p2c.sqlite").exists()


def test_migrate_bad_url_is_one_line(tmp_path: Path) -> None:
    line = assert_one_error_line(p2c("migrate", "--database-url", "not-a-url", cwd=tmp_path))
    assert "P2C_DATABASE_URL" in line


def test_migrate_unsupported_driver_is_one_line(tmp_path: Path) -> None:
    line = assert_one_error_line(p2c("migrate", "--database-url", "mysql://u:pw@h/db", cwd=tmp_path))
    assert "driver" in line
    assert "pw" not in line


def test_migrate_unreachable_database_is_one_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.sqlite'}"
    line = assert_one_error_line(p2c("migrate", "--database-url", url, cwd=tmp_path))
    assert "unreachable" in line


def test_serve_with_malformed_mapping_is_one_line(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("billing_methods: [unclosed\n  - : :\n")
    result = p2c("serve", "--port", "0", cwd=tmp_path, env={"P2C_MAPPING_PATH": str(mapping)})
    line = assert_one_error_line(result)
    assert "mapping" in line.lower()


def test_serve_with_missing_mapping_file_names_the_setting(tmp_path: Path) -> None:
    result = p2c("serve", cwd=tmp_path, env={"P2C_MAPPING_PATH": str(tmp_path / "nope.yaml")})
    line = assert_one_error_line(result)
    assert "P2C_MAPPING_PATH" in line
    assert result.returncode == 2


def test_serve_in_production_without_secrets_names_them(tmp_path: Path) -> None:
    result = p2c("serve", cwd=tmp_path, env={"P2C_MODE": "production"})
    line = assert_one_error_line(result)
    assert "P2C_JWT_SECRET" in line
    assert "required in production mode" in line


def test_serve_with_invalid_setting_names_it(tmp_path: Path) -> None:
    line = assert_one_error_line(p2c("serve", cwd=tmp_path, env={"P2C_CRM__TIMEOUT_S": "abc"}))
    assert line.startswith("error: P2C_CRM__TIMEOUT_S:")
