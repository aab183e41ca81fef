"""A local stand-in for Europe PMC's REST `search` that serves real recorded answers.

Nothing here is invented: every answer is one Europe PMC gave (``../shared/data/europepmc/``, see
its provenance), or one derived from such an answer in code, and every record in it is a real
record or a clone of one made in code with another id or a field changed (:meth:`World.add`,
:meth:`World.revise`, :meth:`World.add_published`).

* The topic's preprints (a query with ``SRC:PPR``): the recorded answers stand for the topic's
  results (they are about cancer, not ketamine). With ``pageSize`` 1000 the recorded 1,000-record
  page (24 preprints among MED and PMC records: a real answer is all preprints, the harvester
  keeps only those), with a smaller ``pageSize`` the recorded complete 10-page ``cursorMark``
  chain (100 a page, whatever the size asked), each page for the ``cursorMark`` the page before
  it gave. The cursor after the last recorded page answers no records and gives itself back as
  ``nextCursorMark`` (how Europe PMC ends a chain). ``hitCount`` is set to the records the world
  holds (the recordings say 5,059,039: the whole of "cancer"). Clones added with :meth:`World.add`
  are served on the chain's last page.
* With ``FIRST_IDATE:[from TO to]`` in the query: the world's preprints first indexed in that
  span, in pages of ``pageSize`` with cursors of the stand-in's own (``idxN``); none: the recorded
  empty answer (``hitCount`` 0), as recorded.
* ``SRC:MED AND (EXT_ID:n OR ...)``: the core records of those PMIDs among the 25 recorded core
  MED records and the clones :meth:`World.add_published` added, in one page.
* ``empty=True``: every topic search answers the recorded empty answer.

Fault kinds: those of tests/ctgov_stand_in.py (``server.faults.add(kind, times=1, path=None,
after=0)``: ``429`` with ``Retry-After: 1``, ``500``/``502``/``503``, ``truncated``, ``malformed``).

Command line: ``python -m tests.europepmc_stand_in --port 8767`` (then
``EUROPEPMC_API_URL=http://127.0.0.1:8767/europepmc/webservices/rest/``).
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

from tests.json_stand_in import JsonStandIn, serve_until_interrupted

EUROPEPMC = (
    Path(os.environ.get("KETAMINE_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
    / "europepmc"
)
CHAIN = EUROPEPMC / "pyEuropePMC-extra" / "fetch_10pages_cancer.json"
PAGE_1000 = EUROPEPMC / "pyEuropePMC-extra" / "search_1000results_cancer.json"
EMPTY = EUROPEPMC / "pyEuropePMC-extra" / "search_no_results.json"
CORE = EUROPEPMC / "pyEuropePMC" / "search_cancer_core.json"

_IDATE = re.compile(r"FIRST_IDATE:\[(\d{4}-\d{2}-\d{2}) TO (\d{4}-\d{2}-\d{2})\]")
_EXT_ID = re.compile(r"EXT_ID:(\d+)")


def recorded(path: Path):
    return json.loads(path.read_text())


class World:
    """What the stand-in serves: the recorded chain and page, clones, and core MED records."""

    def __init__(self, *, empty: bool = False):
        self.empty = empty
        self.chain: list[dict] = recorded(CHAIN)
        self.page_1000: dict = recorded(PAGE_1000)
        self.extra: list[dict] = []
        self.core: dict[str, dict] = {r["pmid"]: r for r in recorded(CORE)["resultList"]["result"]}

    def records(self) -> list[dict]:
        """Every record a topic search serves (recorded ones, then clones)."""
        return [r for page in self.chain for r in page["resultList"]["result"]] + self.extra

    def preprints(self) -> list[dict]:
        return [r for r in self.records() if r["source"] == "PPR"]

    def find(self, ppr_id: str) -> dict:
        return next(r for r in self.records() if r["id"] == ppr_id)

    def add(self, record: dict) -> dict:
        """A clone served after the recorded records (on the last page of the chain)."""
        self.extra.append(record)
        return record

    def clone(self, from_id: str, new_id: str, **fields) -> dict:
        """A real preprint under another PPR id, with `fields` changed, added to the world."""
        record = copy.deepcopy(self.find(from_id))
        record.update(id=new_id, **fields)
        return self.add(record)

    def revise(self, ppr_id: str, change) -> None:
        """A new version of a served record: `change(record)` edits it in place, in every page."""
        for page in [*self.chain, self.page_1000]:
            for record in page["resultList"]["result"]:
                if record["id"] == ppr_id:
                    change(record)
        for record in self.extra:
            if record["id"] == ppr_id:
                change(record)

    def add_published(self, from_pmid: str, new_pmid: int, preprints: list[str]) -> dict:
        """A real core MED record under a catalog PMID, its commentCorrectionList naming these
        preprints "Preprint in" (the shape Europe PMC gives; no recording holds one)."""
        record = copy.deepcopy(self.core[from_pmid])
        record.update(id=str(new_pmid), pmid=str(new_pmid))
        record["commentCorrectionList"] = {
            "commentCorrection": [
                {"id": ppr, "source": "PPR", "type": "Preprint in", "orderIn": i} for i, ppr in enumerate(preprints, 1)
            ]
        }
        self.core[str(new_pmid)] = record
        return record


class EuropepmcStandIn(JsonStandIn):
    """The HTTP side (faults, request log, rate check) is tests/json_stand_in.py's."""

    base_path = "/europepmc/webservices/rest/"

    def __init__(self, world: World | None = None, host: str = "127.0.0.1", port: int = 0):
        self.world = world or World()
        super().__init__(host, port)

    def answer(self, path: str, params: dict) -> tuple[int, bytes]:
        if path.rstrip("/") != "/europepmc/webservices/rest/search":
            return 404, b""
        if params.get("format") != "json":
            return 400, b'{"error": "this stand-in answers format=json only"}'
        query = params.get("query") or ""
        cursor = params.get("cursorMark") or "*"
        size = min(int(params.get("pageSize") or 25), 1000)
        if "SRC:MED" in query:
            wanted = _EXT_ID.findall(query)
            found = [self.world.core[p] for p in wanted if p in self.world.core]
            return 200, self._page(found, len(found), cursor, cursor)
        if "SRC:PPR" not in query:
            return 400, b'{"error": "this stand-in answers the topic search (SRC:PPR) and SRC:MED look-ups"}'
        if self.world.empty:
            return 200, EMPTY.read_bytes()
        window = _IDATE.search(query)
        if window:
            start, end = window.groups()
            chosen = [r for r in self.world.records() if start <= (r.get("firstIndexDate") or "") <= end]
            if not chosen:
                return 200, EMPTY.read_bytes()
            offset = int(cursor[3:]) if cursor.startswith("idx") else 0
            following = f"idx{offset + size}" if offset + size < len(chosen) else cursor
            return 200, self._page(chosen[offset : offset + size], len(chosen), cursor, following)
        total = len(self.world.records())
        if size >= 1000:
            if cursor == "*":
                page = copy.deepcopy(self.world.page_1000)
                page["resultList"]["result"] += self.world.extra
                page["hitCount"] = total
                return 200, json.dumps(page).encode()
            return 200, self._page([], total, cursor, cursor)
        marks = ["*"] + [p["nextCursorMark"] for p in self.world.chain]
        if cursor not in marks:
            return 400, b'{"error": "unknown cursorMark"}'
        index = marks.index(cursor)
        if index == len(self.world.chain):
            return 200, self._page([], total, cursor, cursor)
        page = copy.deepcopy(self.world.chain[index])
        if index == len(self.world.chain) - 1:
            page["resultList"]["result"] += self.world.extra
        page["hitCount"] = total
        return 200, json.dumps(page).encode()

    def _page(self, results: list[dict], hits: int, cursor: str, following: str) -> bytes:
        """An answer in the recorded answers' shape (version, hitCount, nextCursorMark, request)."""
        page = copy.deepcopy(self.world.chain[0])
        page.pop("nextPageUrl", None)
        page["hitCount"] = hits
        page["nextCursorMark"] = following
        page["request"]["cursorMark"] = cursor
        page["resultList"]["result"] = results
        return json.dumps(page).encode()

    def searches(self, kind: str = "SRC:PPR") -> list[dict]:
        return [p for path, p in self.requests if path.endswith("/search") and kind in (p.get("query") or "")]


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Serve the recorded Europe PMC answers as its REST search does.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args(argv)
    server = EuropepmcStandIn(host=args.host, port=args.port)
    serve_until_interrupted(server, f"Europe PMC stand-in on {server.url} ({len(server.world.preprints())} preprints)")


if __name__ == "__main__":
    main()
