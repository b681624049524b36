"""Prefect's temporary API server for one command, started before anything else.

Without `PREFECT_API_URL`, Prefect starts a temporary server at a flow's first API call:
after the command has imported Prefect and the flows (about 3 s), and the server then
takes 6-10 s to boot. Started first, by the command line, its boot overlaps those imports.
It is the process Prefect itself runs (uvicorn on `create_app`, no UI, the ephemeral
services), and the command owns it: a start that timed out is stopped before the retry,
and the server ends with the command.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

from tinylm.flows.session.environment import TEMPORARY_MARK, api_answers

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """In the server's process before it starts: on Linux, be sent SIGTERM when the command dies, even by
    SIGKILL, which runs no exit handler; a killed command must not leave a server behind."""
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TemporaryApiServer:
    """One temporary Prefect API server process on 127.0.0.1: on `port`, or on a free one."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        command = [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error"]
        environment = os.environ | {
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        environment.pop("PREFECT_API_URL", None)
        self.process = subprocess.Popen(
            command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        # Stopped at exit, after Prefect's own exit handlers (registered later, run earlier) have sent
        # the run's last logs and events to it.
        atexit.register(self.stop)

    def wait_until_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if api_answers(self.api_url):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def ensure_prefect_api(command: str, timeout: float) -> None:
    """Give a command's flows an API: the one configured, or else a temporary server of its own, up until exit.

    Call before Prefect is imported (it reads PREFECT_API_URL once). A server that does not
    answer within `timeout` is stopped and started once more on the same port; then the
    command fails with one line saying what to do.
    """
    if "PREFECT_API_URL" in os.environ:
        return
    server = TemporaryApiServer()
    os.environ["PREFECT_API_URL"] = os.environ[TEMPORARY_MARK] = server.api_url
    import tinylm.flows.report  # noqa: F401  Prefect and what every flow imports, while the server boots

    if server.wait_until_up(timeout):
        return
    server.stop()
    print(f"tinylm {command}: Prefect's temporary API server did not start in time; trying once more", file=sys.stderr)
    server = TemporaryApiServer(server.port)
    if not server.wait_until_up(timeout):
        server.stop()
        raise RuntimeError(
            f"Prefect's temporary API server did not start within {timeout:g} s, twice: on a busy machine "
            "start the servers once with `make servers` (commands then use them), "
            "or raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
        )
