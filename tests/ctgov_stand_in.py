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

Fault kinds: tests/json_stand_in.py's (``server.faults.add(kind, times=1, path=None,
after=0)``: ``429``, ``500``/``502``/``503``, ``truncated``, ``malformed``).

Command line: ``python -m tests.ctgov_stand_in --port 8766`` (then
``CTGOV_API_URL=http://127.0.0.1:8766/api/v2/``).
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

from tests.json_stand_in import JsonStandIn, serve_until_interrupted

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


_RANGE = re.compile(r"AREA\[LastUpdatePostDate\]RANGE\[(\d{4}-\d{2}-\d{2}),\s*MAX\]")


class CtgovStandIn(JsonStandIn):
    base_path = "/api/v2/"

    def __init__(self, store: StudyStore | None = None, host: str = "127.0.0.1", port: int = 0):
        self.store = store or StudyStore.recorded()
        super().__init__(host, port)

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


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Serve the recorded ClinicalTrials.gov studies as API v2 does.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args(argv)
    server = CtgovStandIn(host=args.host, port=args.port)
    serve_until_interrupted(
        server, f"ClinicalTrials.gov stand-in on {server.url} ({len(server.store.studies)} studies)"
    )


if __name__ == "__main__":
    main()
