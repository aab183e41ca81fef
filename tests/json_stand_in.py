"""The HTTP side the JSON services' stand-ins share (ClinicalTrials.gov, Europe PMC, OpenAlex).

A `JsonStandIn` serves `GET`s on a local port from its subclass's `answer(path, params)`, logs
every request (`requests`, `arrivals` for the rate check) and applies a `FaultPlan`.

Fault kinds (``server.faults.add(kind, times=1, path=None, after=0)``): ``429`` (empty body,
``Retry-After: 1``), ``500``/``502``/``503``, ``truncated`` (full Content-Length, half the
body, connection closed), ``malformed`` (HTTP 200, the real answer cut in half, its length
declared: not JSON).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Fault:
    kind: str
    times: int | None = 1
    path: str | None = None
    after: int = 0  # let this many matching requests through first
    fired: int = 0
    seen: int = 0


@dataclass
class FaultPlan:
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, *, times: int | None = 1, path: str | None = None, after: int = 0) -> Fault:
        fault = Fault(kind, times, path, after)
        with self.lock:
            self.faults.append(fault)
        return fault

    def pick(self, path: str) -> Fault | None:
        """The fault this request meets, if any: the first armed one whose `after` matching
        requests (counted by every fault, firing or not) have gone by."""
        chosen = None
        with self.lock:
            for fault in self.faults:
                if fault.path is not None and fault.path not in path:
                    continue
                fault.seen += 1
                if chosen is None and fault.seen > fault.after and (fault.times is None or fault.fired < fault.times):
                    fault.fired += 1
                    chosen = fault
        return chosen


class JsonStandIn:
    """A local JSON service: subclasses answer `answer(path, params)` -> (status, body) and set
    `base_path` (the part of `url` after the host)."""

    base_path = "/"

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.faults = FaultPlan()
        self.requests: list[tuple[str, dict]] = []
        self.arrivals: list[float] = []  # time.monotonic() of each request, in order
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                parts = urlsplit(self.path)
                params = dict(parse_qsl(parts.query, keep_blank_values=True))
                stand_in.arrivals.append(time.monotonic())
                stand_in.requests.append((parts.path, params))
                status, body = stand_in.answer(parts.path, params)
                fault = stand_in.faults.pick(parts.path)
                if fault is not None:
                    return self.fault(fault.kind, body)
                self.reply(status, body)

            def reply(self, status, body, headers=()):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def fault(self, kind, body):
                if kind == "429":
                    return self.reply(429, b"", [("Retry-After", "1")])
                if kind in ("500", "502", "503"):
                    return self.reply(int(kind), b"")
                if kind == "malformed":
                    return self.reply(200, body[: len(body) // 2])
                if kind == "truncated":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                raise ValueError(f"unknown fault {kind}")

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}{self.base_path}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str, params: dict) -> tuple[int, bytes]:
        raise NotImplementedError

    def rate_violations(self, limit: float, window: float = 1.0) -> int:
        """How many requests arrived as the (limit+1)-th or later within `window` seconds."""
        times = sorted(self.arrivals)
        n = lo = 0
        for i, t in enumerate(times):
            while times[lo] <= t - window:
                lo += 1
            if i - lo + 1 > limit:
                n += 1
        return n

    def count(self, path_part: str = "") -> int:
        return sum(1 for p, _ in self.requests if path_part in p)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_until_interrupted(server: JsonStandIn, banner: str) -> None:
    """A stand-in's command line: serve, say where, until Ctrl-C."""
    with server:
        print(banner, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
