"""A pre-warmed pytest for mutation testing: import torch and timm once, fork one pytest per mutant.

On a busy 2-core box importing torch + timm costs 10-40 s of the ~20-60 s a mutant takes. The
server imports only third-party libraries (never adcbench, methods or tests, which it checks),
so every forked child imports the project afresh from the mutated files on disk, exactly as a new
process would. The client (`python mutation/forkserver.py run PYTEST_ARGS...`, the sessions'
test-command) hands its stdout/stderr and working directory to the server and exits with the
child's status; without a server it runs `python -m pytest` itself. A client killed on cosmic-ray's
timeout hangs up, and the server then kills the child.

    python mutation/forkserver.py serve &      (mutation/run.sh does this)
    python mutation/forkserver.py run -x -q tests/test_wire.py
"""

from __future__ import annotations

import gc
import importlib
import importlib.metadata
import json
import os
import select
import signal
import socket
import sys

SOCKET = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".forkserver.sock")
PRELOAD = ("numpy", "torch", "torch.nn.functional", "timm", "zstandard", "constriction", "pytest", "hypothesis")


def _child(conn: socket.socket, fds: list[int], req: dict) -> None:
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    sys.path.insert(0, req["cwd"])  # what `python -m pytest` does
    import pytest

    # the preloaded plugins cannot be assertion-rewritten (they are not the code under test)
    os._exit(int(pytest.main(["-W", "ignore::pytest.PytestAssertRewriteWarning", *req["args"]])))


def _wait(pid: int, conn: socket.socket) -> int:
    """The child's exit status; kill it if the client hangs up first (a timeout)."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if select.select([conn], [], [], 0.2)[0] and not conn.recv(1):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -9


def serve() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    for plugin in importlib.metadata.entry_points(group="pytest11"):  # what pytest would load
        plugin.load()
    # pytest's unraisable-exception check runs gc.collect() several times per session: with torch
    # loaded that is seconds per mutant, unless the preloaded objects are frozen out of the GC
    gc.freeze()
    project = [m for m in sys.modules if m.split(".")[0] in ("adcbench", "methods", "tasks", "conftest")]
    assert not project, f"the server must not import the project under test: {project}"
    if os.path.exists(SOCKET):
        os.unlink(SOCKET)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(SOCKET)
    srv.listen(1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            conn, _ = srv.accept()
            with conn:
                data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 2)
                while len(data) < 8 or len(data) < 8 + int.from_bytes(data[:8], "big"):
                    data += conn.recv(1 << 16)
                pid = os.fork()
                if pid == 0:
                    srv.close()
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    _child(conn, fds, json.loads(data[8:]))
                for fd in fds:
                    os.close(fd)
                rc = _wait(pid, conn)
                try:
                    conn.sendall(f"{rc}\n".encode())
                except OSError:
                    pass
    finally:
        os.unlink(SOCKET)


def run(args: list[str]) -> None:
    req = json.dumps({"cwd": os.getcwd(), "env": dict(os.environ), "args": args}).encode()
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(SOCKET)
    except OSError:  # no server: a plain pytest
        os.execv(sys.executable, [sys.executable, "-m", "pytest", *args])
    socket.send_fds(conn, [len(req).to_bytes(8, "big") + req], [1, 2])
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = conn.recv(64)
        if not chunk:
            sys.exit("mutation/forkserver.py: the server hung up")
        reply += chunk
    rc = int(reply)
    sys.exit(rc if rc >= 0 else 128 - rc)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve()
    elif sys.argv[1:2] == ["run"]:
        run(sys.argv[2:])
    else:
        sys.exit(__doc__)
