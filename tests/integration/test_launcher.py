"""The launcher every live-server test uses: a port taken before the server binds it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving import launcher


def test_a_server_whose_port_is_taken_meanwhile_starts_again_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The chosen port is free when chosen; here another process holds it by the time the
    # server binds, as a concurrent test run or a service starting up may.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    ports: Iterator[int] = iter([taken])
    real_free_port = launcher.free_port
    monkeypatch.setattr(launcher, "free_port", lambda: next(ports, None) or real_free_port())
    server = launcher.launch(tmp_path / "var", demo=False)
    try:
        assert not server.url.endswith(f":{taken}")
        assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
        assert launcher.PORT_TAKEN in (tmp_path / f"server-{taken}.log").read_text()
    finally:
        server.stop()
        holder.close()
