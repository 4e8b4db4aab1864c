"""A real Redis for tests and benchmarks: Debian's ``redis-server`` on a unix socket.

Not part of the public testing API: the project's own tests and benchmarks start the
shared-quota store with it (no persistence, a socket of their own, stopped and started
again at will).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["REDIS_SERVER", "RedisServer"]

#: The redis-server program, when installed.
REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    """One redis-server process that a test can stop and start again on the same socket.

    With ``append_only`` it keeps an append-only file (fsynced at every write) in
    ``folder``, so a restart (even after SIGKILL) finds the data again; without, a restart
    starts empty.
    """

    def __init__(self, folder: Path, *, append_only: bool = False) -> None:
        self.folder = folder
        self.append_only = append_only
        self.socket = folder / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "yes" if self.append_only else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(self.socket))
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start within 20 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=20)
            self.process = None
        self.socket.unlink(missing_ok=True)
