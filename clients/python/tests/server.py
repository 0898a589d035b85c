"""Runs a real `convergence serve` for the end-to-end tests: loopback, a free port, a
temporary data directory. The binary is $CONVERGENCE_BIN, else
build/src/cmd/convergence under the repository root."""

import os
import shutil
import signal
import subprocess
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def binary() -> str:
    path = os.environ.get("CONVERGENCE_BIN") or os.path.join(REPO, "build", "src", "cmd",
                                                             "convergence")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no convergence binary at {path}: build it or set CONVERGENCE_BIN")
    return path


class Server:
    """``start()`` picks a free port the first time and keeps it across restarts, so
    that clients reconnect to the same address."""

    def __init__(self, *args: str, data_dir: str | None = None):
        self.args = list(args)
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="convergence-py-")
            data_dir = os.path.join(self._tmp, "data")
        self.data_dir = data_dir
        self.port = 0
        self.proc = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> "Server":
        cmd = [binary(), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir",
               self.data_dir, "--log-level", "warn", *self.args]
        deadline = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
            line = self.proc.stdout.readline()
            if line.startswith("listening on "):
                self.port = int(line.rsplit(":", 1)[1])
                return self
            err = self.proc.stderr.read()
            self.proc.wait()
            # Right after a kill the data dir's lock or the port may still be held.
            if time.monotonic() > deadline:
                raise RuntimeError(f"convergence serve did not start: {line}{err}")
            time.sleep(0.1)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._close_pipes()

    def stop(self) -> int:
        """SIGTERM (graceful stop); returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._close_pipes()
        return code

    def _close_pipes(self):
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill9()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
