"""A TCP proxy in front of PostgreSQL's unix socket that delays every forwarded chunk by a
fixed time in each direction: 2.5 ms each way makes a 5 ms round-trip link.

The delay is latency, not a bandwidth cap: per connection and direction, a reader thread
stamps each chunk with ``arrival + delay`` and queues it, and a writer thread sends it at
that time. Chunks that arrive back to back (a COPY stream) are all shifted by the same
2.5 ms instead of paying 2.5 ms each, so the cost is per round trip, not per byte or per
chunk. Order is kept (one FIFO queue per direction).

It runs in its own process (``python -m bench.delayproxy --target SOCK --delay-ms 2.5``,
which prints its port on stdout and serves until stdin closes or SIGTERM), so that its
threads never compete for the GIL of the process being measured. ``DelayProxy`` starts
and stops that process.

It also counts the round trips clients make: an *exchange* is a client sending after it
last heard from the server (or for the first time), so a pipeline of statements sent
before the first answer is read counts once, however many chunks it takes. A line
``stats`` on its stdin is answered with one JSON line on stdout: connections accepted and
exchanges so far (``DelayProxy.stats()``), so a caller can count a command's round trips.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

CHUNK = 256 * 1024
REPO = Path(__file__).resolve().parent.parent


class _Counts:
    """Connections accepted and exchanges (client turns) seen, over every link."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.exchanges = 0

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {"connections": self.connections, "exchanges": self.exchanges}


COUNTS = _Counts()


class _Link:
    """One proxied connection: two directions, each a reader and a delayed writer."""

    def __init__(self, client: socket.socket, upstream: socket.socket, delay_s: float) -> None:
        self.client = client
        self.upstream = upstream
        self.delay_s = delay_s
        self._client_turn = False  # the client spoke last (its next chunk is the same turn)
        with COUNTS.lock:
            COUNTS.connections += 1
        for src, dst in ((client, upstream), (upstream, client)):
            chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
            threading.Thread(target=self._read, args=(src, chunks), daemon=True).start()
            threading.Thread(target=self._write, args=(dst, chunks), daemon=True).start()

    def _read(self, src: socket.socket, chunks: queue.SimpleQueue[tuple[float, bytes]]) -> None:
        while True:
            try:
                data = src.recv(CHUNK)
            except OSError:
                data = b""
            if data:
                self._heard(from_client=src is self.client)
            chunks.put((time.monotonic() + self.delay_s, data))
            if not data:
                return

    def _heard(self, *, from_client: bool) -> None:
        with COUNTS.lock:
            if from_client and not self._client_turn:
                COUNTS.exchanges += 1
            self._client_turn = from_client

    def _write(self, dst: socket.socket, chunks: queue.SimpleQueue[tuple[float, bytes]]) -> None:
        while True:
            due, data = chunks.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not data:
                self.close()
                return
            try:
                dst.sendall(data)
            except OSError:
                self.close()
                return

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


def serve(target: str, delay_s: float) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(target)
        except OSError:
            client.close()
            continue
        _Link(client, upstream, delay_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="unix socket of the server")
    parser.add_argument("--delay-ms", type=float, default=2.5, help="delay in each direction")
    args = parser.parse_args(argv)
    sys.setswitchinterval(0.0002)  # a woken writer thread gets the GIL promptly
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    threading.Thread(target=serve, args=(args.target, args.delay_ms / 1000), daemon=True).start()
    for line in sys.stdin:  # serve until the parent closes our stdin (or dies)
        if line.strip() == "stats":
            print(json.dumps(COUNTS.snapshot()), flush=True)
    return 0


class DelayProxy:
    """Runs ``bench.delayproxy`` in a child process for the duration of a ``with`` block."""

    def __init__(self, target: str, delay_ms: float = 2.5) -> None:
        self.target = target
        self.delay_ms = delay_ms
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> DelayProxy:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.delayproxy",
                "--target",
                self.target,
                "--delay-ms",
                str(self.delay_ms),
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.strip():
            self.close()
            raise RuntimeError("delay proxy did not start")
        self.port = int(line)
        return self

    def stats(self) -> dict[str, int]:
        """Connections accepted and exchanges (round trips clients made) so far."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("stats\n")
        proc.stdin.flush()
        counts: dict[str, int] = json.loads(proc.stdout.readline())
        return counts

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
