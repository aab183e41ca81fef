"""A local stand-in for OpenAlex's `/works` that serves real recorded works.

Nothing here is invented: every work it serves is a real OpenAlex work from
``../shared/data/openalex/`` (see that folder's provenance), or a clone of one made in code
that carries another PMID (:meth:`WorkStore.add_clone`, e.g. a PMID the test catalog stores)
or a changed count (:meth:`WorkStore.revise`). Answers are built in the recorded answers'
shape: ``meta`` (``count``, ``db_response_time_ms``, ``page``, ``per_page``, ``next_cursor``,
``groups_count``), ``results``, ``group_by``.

* ``GET /works?filter=pmid:A|B|...`` -- the works carrying those PMIDs, in the store's order;
  ``filter=doi:A|B|...`` the works with those DOIs (any case, with or without https://doi.org/).
  ``per_page`` (default 25, at most 200, as OpenAlex), and either ``cursor`` (``*`` first, then
  the ``meta.next_cursor`` of the page before; ``null`` on the last page) or ``page`` (page
  numbers, ``meta.page``). A filter on anything but ``pmid`` or ``doi`` is answered 400, as OpenAlex does
  for a filter it does not know. No match: ``count`` 0 and ``results`` [] (the recorded empty
  answer's shape).
* ``GET /works/pmid:N`` and ``GET /works/W123`` -- one work, or 404.

Fault kinds (``server.faults.add(kind, times=1, path=None, after=0)``, the ClinicalTrials.gov
stand-in's, from tests/json_stand_in.py): ``429`` (empty body, ``Retry-After: 1``), ``500``/``502``/``503``,
``truncated`` (full Content-Length, half the body, connection closed), ``malformed`` (HTTP 200,
the real answer cut in half: not JSON).

Command line: ``python -m tests.openalex_stand_in --port 8767`` (then
``OPENALEX_API_URL=http://127.0.0.1:8767/``); ``--clone-pmids FILE`` adds, for every PMID in
FILE (one a line), a clone of a recorded work carrying it.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from pathlib import Path

from tests.json_stand_in import JsonStandIn, serve_until_interrupted

OPENALEX = (
    Path(os.environ.get("KETAMINE_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
    / "openalex"
)
# The recorded answers: list pages (cursor and page paging) and single works.
LIST_FILES = (
    "paper__ingestion__clients__enrichment__tests__fixtures__openalex_sample_response.json",  # cursor page, 3 works
    "paper__tests__fixtures__openalex_works.json",  # page paging; the same work twice (edited by that project)
    "paper__tests__fixtures__work_by_doi.json",
    "utils__tests__openalex_with_researchhub_works.json",  # 13 works, 6 without a PMID
)
SINGLE_FILES = (
    "paper__tests__fixtures__openalex_single_work.json",  # cited_by_count 0, counts_by_year []
    "paper__ingestion__clients__enrichment__tests__fixtures__openalex_sample_get_by_doi_response.json",
)
EMPTY_FILE = "paper__ingestion__clients__enrichment__tests__fixtures__openalex_empty_response.json"
CLONE_ID_BASE = 9_000_000_000  # OpenAlex ids of clones: W9000000001, ... (real ones are W1... to W4...)


def recorded_works() -> list[dict]:
    """Every distinct recorded work (by OpenAlex id), in file order."""
    works: dict[str, dict] = {}
    for name in LIST_FILES:
        for work in json.loads((OPENALEX / name).read_text())["results"]:
            works.setdefault(work["id"], work)
    for name in SINGLE_FILES:
        work = json.loads((OPENALEX / name).read_text())
        works.setdefault(work["id"], work)
    return list(works.values())


def pmid_of(work: dict) -> int | None:
    value = (work.get("ids") or {}).get("pmid")
    match = re.search(r"(\d+)/?$", value or "")
    return int(match.group(1)) if match else None


class WorkStore:
    def __init__(self, works: list[dict]):
        self.works: list[dict] = []
        for work in works:
            self.put(work)
        self._clones = 0

    @classmethod
    def recorded(cls) -> WorkStore:
        return cls(recorded_works())

    def put(self, work: dict) -> None:
        self.works = [w for w in self.works if w["id"] != work["id"]] + [work]

    def by_id(self, work_id: str) -> dict | None:
        return next((w for w in self.works if w["id"].rsplit("/", 1)[-1] == work_id), None)

    def by_pmid(self, pmid: int) -> list[dict]:
        return [w for w in self.works if pmid_of(w) == pmid]

    def by_doi(self, doi: str) -> list[dict]:
        return [w for w in self.works if doi_of(w) == doi_of({"doi": doi})]

    def add_clone(self, pmid: int | None, from_id: str, doi: str | None = None) -> dict:
        """A real work under a new OpenAlex id, carrying `pmid` (a record the catalog stores), or
        with `doi` and no PMID (a preprint the catalog stores)."""
        source = self.by_id(from_id.rsplit("/", 1)[-1])
        if source is None:
            raise KeyError(from_id)
        self._clones += 1
        work = copy.deepcopy(source)
        work["id"] = f"https://openalex.org/W{CLONE_ID_BASE + self._clones}"
        ids = {**(work.get("ids") or {}), "openalex": work["id"]}
        if pmid is not None:
            ids["pmid"] = f"https://pubmed.ncbi.nlm.nih.gov/{pmid}"
        else:
            ids.pop("pmid", None)
            ids.pop("pmcid", None)
        if doi is not None:
            work["doi"] = ids["doi"] = f"https://doi.org/{doi}"
        work["ids"] = ids
        self.put(work)
        return work

    def revise(self, work_id: str, change) -> dict:
        """A new version of a stored work: `change(work)` edits a copy in place."""
        found = self.by_id(work_id.rsplit("/", 1)[-1])
        if found is None:
            raise KeyError(work_id)
        work = copy.deepcopy(found)
        change(work)
        self.put(work)
        return work


def doi_of(work: dict) -> str | None:
    value = work.get("doi")
    if not isinstance(value, str) or not value.strip():
        return None
    return re.sub(r"^https?://(dx\.)?doi\.org/", "", value.strip().lower())


_FILTER = re.compile(r"^(pmid|doi):(.+)$")


class OpenalexStandIn(JsonStandIn):
    def __init__(self, store: WorkStore | None = None, host: str = "127.0.0.1", port: int = 0):
        self.store = store or WorkStore.recorded()
        self._empty = json.loads((OPENALEX / EMPTY_FILE).read_text())
        super().__init__(host, port)

    def answer(self, path: str, params: dict) -> tuple[int, bytes]:
        path = path.rstrip("/")
        if path == "/works":
            return self.search(params)
        if path.startswith("/works/"):
            key = path[len("/works/") :]
            if key.startswith("pmid:") and key[5:].isdigit():
                found = self.store.by_pmid(int(key[5:]))
                work = found[0] if found else None
            else:
                work = self.store.by_id(key)
            if work is None:
                return 404, json.dumps({"error": "404", "message": f"{key} not found"}).encode()
            return 200, json.dumps(work).encode()
        return 404, b""

    def search(self, params: dict) -> tuple[int, bytes]:
        match = _FILTER.fullmatch(params.get("filter", "").strip())
        if not match:
            return 400, json.dumps(
                {"error": "Invalid query parameters error.", "message": "unsupported filter"}
            ).encode()
        field, values = match.group(1), [v for v in match.group(2).split("|") if v]
        if field == "pmid":
            if not all(v.isdigit() for v in values):
                return 400, json.dumps({"error": "Invalid query parameters error.", "message": "bad pmid"}).encode()
            wanted_pmids = {int(v) for v in values}
            works = [w for w in self.store.works if pmid_of(w) in wanted_pmids]
        else:
            wanted_dois = {doi_of({"doi": v}) for v in values}
            works = [w for w in self.store.works if doi_of(w) in wanted_dois]
        per_page = min(int(params.get("per_page") or 25), 200)
        meta = dict(self._empty["meta"])
        meta.update(count=len(works), per_page=per_page)
        if "cursor" in params:
            cursor = params["cursor"]
            offset = 0 if cursor == "*" else int(base64.b64decode(cursor).decode())
            page = works[offset : offset + per_page]
            more = offset + per_page < len(works)
            meta.update(
                page=None, next_cursor=base64.b64encode(str(offset + per_page).encode()).decode() if more else None
            )
        else:
            number = int(params.get("page") or 1)
            page = works[(number - 1) * per_page : number * per_page]
            meta.pop("next_cursor", None)  # page paging: the recorded page answer has none
            meta.update(page=number)
        return 200, json.dumps({"meta": meta, "results": page, "group_by": []}).encode()


def clone_for_dois(store: WorkStore, dois) -> list[dict]:
    """A clone of a recorded work for each of `dois` (a preprint's), carrying it and no PMID."""
    sources = [w["id"] for w in recorded_works() if pmid_of(w) is not None]
    return [store.add_clone(None, sources[i % len(sources)], doi=doi) for i, doi in enumerate(dois)]


def clone_for(store: WorkStore, pmids) -> list[dict]:
    """A clone of a recorded work with a PMID for each of `pmids` (the recorded works with a
    PMID, in turn), so that a catalog of real PubMed records gets real-shaped citation counts."""
    sources = [w["id"] for w in recorded_works() if pmid_of(w) is not None]
    return [store.add_clone(pmid, sources[i % len(sources)]) for i, pmid in enumerate(pmids)]


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Serve the recorded OpenAlex works as /works does.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument(
        "--clone-pmids", type=Path, help="a file of PMIDs (one a line) to give clones of recorded works"
    )
    args = parser.parse_args(argv)
    server = OpenalexStandIn(host=args.host, port=args.port)
    if args.clone_pmids:
        pmids = [int(line) for line in args.clone_pmids.read_text().split() if line.strip().isdigit()]
        clone_for(server.store, pmids)
    serve_until_interrupted(server, f"OpenAlex stand-in on {server.url} ({len(server.store.works)} works)")


if __name__ == "__main__":
    main()
