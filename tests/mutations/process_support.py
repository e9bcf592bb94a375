"""Helpers for the tests that run the gateway as real processes and kill them: the three sandboxes served
by ``p2c sandbox serve`` with state files (what the vendors hold survives the gateway's death), the
environment a child process of ours gets, and gateway processes pointed at those sandboxes.

    with serve_sandboxes(tmp_path, seed=7, accounts=30, faults={"latency_ms": 100}) as urls:
        proc = await spawn(urls, database_url, "-c", DRIVER, "provision", "006...")
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ("crm", "psa", "erp")
CLI = "from gateway.cli import app; app()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def child_env(**extra: str) -> dict[str, str]:
    """Our environment without any ``P2C_*`` setting, the repository on the path, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2C_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def gateway_env(urls: Mapping[str, str], database_url: str, **extra: str) -> dict[str, str]:
    """A gateway process's environment: the store and the three sandboxes by URL."""
    settings = {
        "P2C_DATABASE_URL": database_url,
        "P2C_CRM__BASE_URL": urls["crm"],
        "P2C_PSA__BASE_URL": urls["psa"],
        "P2C_ERP__BASE_URL": urls["erp"],
        "P2C_LOG_LEVEL": "WARNING",
    }
    return child_env(**{**settings, **extra})


@contextmanager
def serve_sandboxes(
    state_dir: Path,
    *,
    seed: int,
    accounts: int,
    faults: Mapping[str, Mapping[str, Any]] | Mapping[str, Any] | None = None,
    systems: tuple[str, ...] = SYSTEMS,
    startup_s: float = 30.0,
) -> Iterator[dict[str, str]]:
    """Each sandbox as its own process on a free port, its state in ``state_dir/<system>.db``, its log in
    ``state_dir/<system>.log``. ``faults`` is the body PUT to ``/__sandbox/faults`` (every sandbox), or
    ``{system: body}``. Yields ``{system: base URL}``; terminates them on exit."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    per_system = faults is not None and set(faults) <= set(SYSTEMS)
    try:
        for system in systems:
            port = free_port()
            args = ["sandbox", "serve", system, "--port", str(port), "--db", str(state_dir / f"{system}.db")]
            args += ["--seed", str(seed), "--accounts", str(accounts)]
            log = open(state_dir / f"{system}.log", "wb")  # noqa: SIM115 — closed with the process
            command = [sys.executable, "-c", CLI, *args]
            procs.append(subprocess.Popen(command, env=child_env(), stdout=log, stderr=log, cwd=ROOT))
            urls[system] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + startup_s
        for system, url in urls.items():
            body = (faults or {}).get(system) if per_system else faults
            while True:
                try:
                    httpx.put(f"{url}/__sandbox/faults", json=dict(body or {})).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                        raise
                    time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


async def spawn(
    urls: Mapping[str, str],
    database_url: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> asyncio.subprocess.Process:
    """``python *args`` as a gateway process against ``urls`` and ``database_url``. Output is piped, or
    appended to ``log`` (a long-running worker would fill a pipe nobody reads)."""
    environment = gateway_env(urls, database_url, **(env or {}))
    if log is None:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            env=environment,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, *args, env=environment, cwd=ROOT, stdout=out, stderr=out
        )
