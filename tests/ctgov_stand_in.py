"""A local stand-in for ClinicalTrials.gov API v2 that serves real recorded studies.

Nothing here is invented: every study it serves is a real API v2 study record from
``../shared/data/ctgov/`` (see that folder's provenance), or a clone of one made in code with
another NCT id or a field changed (:meth:`StudyStore.add_clone`, :meth:`StudyStore.revise`).

* ``GET /studies`` -- the topic's results are the loaded studies (the recorded studies are not
  about ketamine: they stand for what the topic query returns, as the PubMed stand-in's files
  do); ``query.*`` parameters are accepted and ignored. ``pageSize`` (default 10, at most
  1000), ``pageToken`` (the ``nextPageToken`` of the page before), ``countTotal=true``
  (``totalCount`` on the first page, as the registry does), ``filter.ids`` (comma- or
  pipe-separated; searches every study, topic or not; unknown ids are left out, as the
  registry does), ``filter.advanced=AREA[LastUpdatePostDate]RANGE[from,MAX]``. Another
  ``filter.advanced`` is answered 400.
* ``GET /studies/{nctId}`` -- the study, or 404 for an id it does not know.

Fault kinds (``server.faults.add(kind, times=1, path=None, after=0)``): ``429`` (empty body,
``Retry-After: 1``), ``500``/``502``/``503``, ``truncated`` (full Content-Length, half the
body, connection closed), ``malformed`` (HTTP 200, the real answer cut in half, its length
declared: not JSON).

Command line: ``python -m tests.ctgov_stand_in --port 8766`` (then
``CTGOV_API_URL=http://127.0.0.1:8766/api/v2/``).
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

CTGOV = (
    Path(os.environ.get("KETAMINE_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
    / "ctgov"
)

# Complete real study records, one a file (the search captures hold reduced copies).
STUDY_FILES = (
    "aact/NCT03630471.json",  # referencesModule: 10 BACKGROUND PMIDs
    "aact/NCT05594173.json",  # hasResults, a resultsSection
    "aact/NCT06171568.json",
    "py-load-ctgov/NCT04267848_complex.json",  # referencesModule: PMID 33878954, DERIVED
    "cyanheads-examples/study_NCT00184067_2025-06-17T11-17-42-480Z.json",  # TERMINATED
    "cyanheads-examples/study_NCT03934567_2025-06-17T11-17-59-791Z.json",
)


def nct_of(study: dict) -> str:
    return study["protocolSection"]["identificationModule"]["nctId"]


def last_update_of(study: dict) -> str:
    return study["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"]


class StudyStore:
    def __init__(self, studies: list[dict]):
        self.studies: dict[str, dict] = {}
        self.topic: list[str] = []
        for study in studies:
            self.put(study, topic=True)

    @classmethod
    def recorded(cls, files=STUDY_FILES) -> StudyStore:
        return cls([json.loads((CTGOV / f).read_text()) for f in files])

    def put(self, study: dict, *, topic: bool) -> None:
        nct = nct_of(study)
        self.studies[nct] = study
        if topic and nct not in self.topic:
            self.topic.append(nct)

    def add_clone(self, new_nct: str, from_nct: str, *, topic: bool = False, references=None) -> dict:
        """A real study under another NCT id (e.g. one a real PubMed record cites); with
        `references`, its referencesModule points at these (pmid, type) pairs instead."""
        study = copy.deepcopy(self.studies[from_nct])
        study["protocolSection"]["identificationModule"]["nctId"] = new_nct
        if references is not None:
            study["protocolSection"]["referencesModule"] = {
                "references": [{"pmid": str(pmid), "type": kind} for pmid, kind in references]
            }
        self.put(study, topic=topic)
        return study

    def revise(self, nct: str, change) -> dict:
        """A new version of a stored study: `change(study)` edits a copy in place."""
        study = copy.deepcopy(self.studies[nct])
        change(study)
        self.studies[nct] = study
        return study


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


_RANGE = re.compile(r"AREA\[LastUpdatePostDate\]RANGE\[(\d{4}-\d{2}-\d{2}),\s*MAX\]")


class CtgovStandIn:
    def __init__(self, store: StudyStore | None = None, host: str = "127.0.0.1", port: int = 0):
        self.store = store or StudyStore.recorded()
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
        self.url = f"http://{host}:{self.server.server_address[1]}/api/v2/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str, params: dict) -> tuple[int, bytes]:
        prefix = "/api/v2/studies"
        if path.rstrip("/") == prefix:
            return self.search(params)
        if path.startswith(prefix + "/"):
            study = self.store.studies.get(path[len(prefix) + 1 :])
            if study is None:
                return 404, b""
            return 200, json.dumps(study).encode()
        return 404, b""

    def search(self, params: dict) -> tuple[int, bytes]:
        if params.get("filter.ids"):
            wanted = [i for i in re.split(r"[,|\s]+", params["filter.ids"]) if i]
            ids = [i for i in wanted if i in self.store.studies]
        else:
            ids = list(self.store.topic)
        advanced = params.get("filter.advanced")
        if advanced:
            match = _RANGE.fullmatch(advanced.strip())
            if not match:
                return 400, json.dumps({"message": "unsupported filter.advanced"}).encode()
            ids = [i for i in ids if last_update_of(self.store.studies[i]) >= match.group(1)]
        size = min(int(params.get("pageSize") or 10), 1000)
        offset = int(params["pageToken"][4:]) if params.get("pageToken", "").startswith("page") else 0
        page = ids[offset : offset + size]
        answer: dict = {}
        if params.get("countTotal") == "true" and offset == 0:
            answer["totalCount"] = len(ids)
        answer["studies"] = [self.store.studies[i] for i in page]
        if offset + size < len(ids):
            answer["nextPageToken"] = f"page{offset + size}"
        return 200, json.dumps(answer).encode()

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

    def __enter__(self) -> CtgovStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv=None) -> None:
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Serve the recorded ClinicalTrials.gov studies as API v2 does.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args(argv)
    server = CtgovStandIn(host=args.host, port=args.port)
    with server:
        print(f"ClinicalTrials.gov stand-in on {server.url} ({len(server.store.studies)} studies)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
