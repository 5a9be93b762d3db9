"""Start ``reelsift serve`` in a child process and stop it: for tests and benchmarks that
need the real HTTP server, exactly as an operator would run it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
READY_LINE = "reelsift is serving at"
PORT_TAKEN = "Address already in use"
PORT_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LaunchedServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own session reaches `reelsift serve`, which stops BentoML
    and its workers; SIGKILL is the last resort."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def launch(
    data_dir: Path,
    *,
    demo: bool = True,
    extra_env: dict[str, str] | None = None,
    timeout_s: float = 300,
    model_cache_dir: Path | None = REPO / "var" / "test-cache",
) -> LaunchedServer:
    """Serve ``data_dir`` on a free port; returns once the server says it is serving.

    The port is free when chosen but is only bound once the server has loaded its models,
    seconds later; another process may take it in between. A server that exits because
    its port was taken is started again on another port (at most ``PORT_ATTEMPTS`` times).
    """
    env = {**os.environ, "REELSIFT_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1",
           **(extra_env or {})}
    if model_cache_dir is not None:
        # Model exports are derived data: several servers can share one cache.
        env.setdefault("REELSIFT_MODEL_CACHE_DIR", str(model_cache_dir))
    deadline = time.monotonic() + timeout_s
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        log = data_dir.parent / f"server-{port}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "serving.cli", "serve", "--port", str(port)]
        if demo:
            cmd.append("--demo")
        with log.open("wb") as fh:
            process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        server = LaunchedServer(url=f"http://127.0.0.1:{port}", process=process, log=log)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                said = log.read_text(errors="replace")
                if PORT_TAKEN in said and attempt < PORT_ATTEMPTS:
                    break  # the port went to someone else: try another
                raise RuntimeError(f"server exited early:\n{said[-4000:]}")
            if READY_LINE in log.read_text(errors="replace"):
                return server
            time.sleep(1)
        else:
            server.stop()
            raise RuntimeError(f"server not ready in {timeout_s:.0f}s:\n{log.read_text()[-4000:]}")
    raise AssertionError("unreachable: the last attempt returns or raises")
