"""The real server (`tutor serve`) in a subprocess on a loopback port, for browser tests, benchmarks and scripts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_SECS = 180.0  # importing pipecat and (when preloading) the speech models takes a while on 2 cores


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """`tutor serve` on 127.0.0.1 with its own data directory and TUTOR_* overrides; stops on exit."""

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None, log_path: Path | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or data_dir / "server.log"
        self._env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUTOR_")}
        env.update(
            {
                "TUTOR_SERVER__DATA_DIR": str(self.data_dir),
                "TUTOR_DATABASE__AUTO_MIGRATE": "true",
                "TUTOR_SERVER__LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self._env)
        log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECS
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"server exited with {self._proc.returncode}; see {self.log_path}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/readyz", timeout=2) as response:
                    if response.status == 200:
                        return self.base_url
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server did not become ready in {STARTUP_TIMEOUT_SECS:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, as a service manager stops the server; returns its exit status once it has exited."""
        assert self._proc is not None, "the server is not running"
        self._proc.terminate()
        try:
            return self._proc.wait(timeout=timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._proc = None

    def __enter__(self) -> LiveServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
