"""Catalog latency at 1,000,000 articles, served by Datasette with db/'s own configuration.

The million-article catalog is built fast, at the SQL level: the rows of an imported catalog
(every table the pages read) are copied N times with PMIDs shifted by N x 200,000,000 into a
bench-only database made by `store.open_db` (the real schema), with indexes dropped during
the copy and created once after it, the FTS index rebuilt once, and the facet summaries
counted once, as the end of a harvest or import counts them (no ANALYZE: a catalog the
harvester builds has no statistics either, and they change SQLite's plans). Left out:
article_xml (the compressed originals, which no page reads) and article_events.

It is served as `make serve` serves db/: `datasette serve DIR` where DIR holds a copy of
every file of db/ except its database, and the bench catalog as catalog.db. A bounded
loopback load (CONCURRENCY clients, at most REQUESTS requests and SECONDS seconds per page)
measures p50 and p95 of: ranked search (records and preprints), the faceted articles page, an
article page, the evidence map (/-/evidence-map, its three axes and filters, its JSON, and of
preprints), a preprint's page, and every canned query of the catalog (metadata.yml's and the
cookbook's), first page load. The topic's preprints (2,400 clones of Europe PMC's recorded real
ones) are stored beside the articles once per catalog, their storing and linking timed.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.common import ROOT, LoadSampler, log

TARGET = 1_000_000
SHIFT = 200_000_000
CONCURRENCY = 4
REQUESTS = 16
SECONDS = 10
SEARCH_TERMS = [
    "depression",
    "ketamine",
    "randomized controlled trial",
    "heart failure",
    "children asthma",
    "cancer therapy",
    "mice",
    "suicid*",
    "pregnancy outcome",
    "hypertension treatment",
]
# Tables copied N times (keyed by pmid) and tables copied once (shared vocabularies, the run log).
PER_ARTICLE = [
    "articles",
    "abstract_sections",
    "article_authors",
    "article_author_affiliations",
    "article_mesh",
    "article_mesh_qualifiers",
    "article_publication_types",
    "article_languages",
    "keywords",
    "article_ids",
    "grants",
    "trial_registrations",
    "databanks",
    "comments_corrections",
    "chemicals",
    "supplementary_concepts",
    "article_history",
    "article_tags",
    # Both ends shifted: each copy's articles are similar to that copy's articles, so an article
    # page lists its ten neighbours at a million rows as it does at the source's size.
    "similar_articles",
]
# Columns holding a PMID, shifted by each copy's offset.
PMID_COLUMNS = ("pmid", "similar_pmid")
ONCE = ["authors", "mesh_descriptors", "publication_types", "harvest_runs"]


def build(source: Path, target_dir: Path, target: int = TARGET) -> dict:
    from harvest import store

    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / "catalog.db"
    (target_dir / BUILD_STAMP).unlink(missing_ok=True)  # a build cut short is never reused
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    start = time.perf_counter()
    store.open_db(path).conn.close()  # the real schema, every migration applied
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("pragma journal_mode=delete")
    conn.execute("pragma synchronous=off")
    conn.execute("pragma foreign_keys=off")
    conn.execute("pragma cache_size=-1048576")
    conn.execute("pragma temp_store=memory")
    indexes = conn.execute("select name, sql from sqlite_master where type = 'index' and sql is not null").fetchall()
    triggers = conn.execute(
        "select name, sql from sqlite_master where type = 'trigger' and tbl_name = 'articles'"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"drop index [{name}]")
    for name, _ in triggers:
        conn.execute(f"drop trigger [{name}]")
    conn.execute("attach ? as src", [str(source)])
    n = conn.execute("select count(*) from src.articles").fetchone()[0]
    copies = math.ceil(target / n)
    timings = {}
    conn.execute("begin")
    for table in ONCE:
        conn.execute(f"insert or ignore into main.[{table}] select * from src.[{table}]")
    for k in range(copies):
        limit = min(n, target - k * n)
        cutoff = conn.execute("select pmid from src.articles order by pmid limit 1 offset ?", [limit - 1]).fetchone()[0]
        for table in PER_ARTICLE:
            t = time.perf_counter()
            columns = [row[1] for row in conn.execute(f"pragma main.table_info([{table}])")]
            # A harvested catalog holds what the topic query returned: every row matches it
            # (an import marks most of the shared records, which are not about ketamine, 0).
            select = ", ".join(
                f"[{c}] + {k * SHIFT}" if c in PMID_COLUMNS else "1" if c == "matches_query" else f"[{c}]"
                for c in columns
            )
            names = ", ".join(f"[{c}]" for c in columns)
            within = " and ".join(f"[{c}] <= :cutoff" for c in columns if c in PMID_COLUMNS)
            conn.execute(
                f"insert into main.[{table}] ({names}) select {select} from src.[{table}] where {within}",
                {"cutoff": cutoff},
            )
            timings[table] = timings.get(table, 0) + time.perf_counter() - t
    conn.execute("commit")
    conn.execute("detach src")
    copied = time.perf_counter() - start
    log(f"catalog: rows copied in {copied:.0f} s; creating indexes")
    t = time.perf_counter()
    conn.execute("begin")
    for _, sql in indexes:
        conn.execute(sql)
    for _, sql in triggers:
        conn.execute(sql)
    conn.execute("commit")
    indexed = time.perf_counter() - t
    log(f"catalog: indexes in {indexed:.0f} s; rebuilding the search index")
    t = time.perf_counter()
    conn.execute("insert into articles_fts(articles_fts) values ('rebuild')")
    fts = time.perf_counter() - t
    log(f"catalog: search index in {fts:.0f} s; counting the facet summaries")
    import sqlite_utils

    from harvest import summaries

    summarised = summaries.refresh(sqlite_utils.Database(conn))  # as a harvest or import ends
    articles = conn.execute("select count(*) from articles").fetchone()[0]
    similar = conn.execute("select count(*) from similar_articles").fetchone()[0]
    conn.close()
    return {
        "source_articles": n,
        "copies": copies,
        "articles": articles,
        "similar_articles_rows": similar,
        "seconds": {
            "copy": round(copied, 1),
            "indexes": round(indexed, 1),
            "fts_rebuild": round(fts, 1),
            "summaries": round(summarised, 1),
            "total": round(time.perf_counter() - start, 1),
        },
        "db_gib": round(path.stat().st_size / 2**30, 2),
    }


BUILD_STAMP = "build.json"


def _source_identity(source: Path) -> dict:
    """What the bench catalog was copied from: the imported catalog's path and its articles
    (opening it can checkpoint its WAL, so its size and time are no identity)."""
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        count, last = conn.execute("select count(*), max(pmid) from articles").fetchone()
    finally:
        conn.close()
    return {"path": str(source.resolve()), "articles": count, "max_pmid": last}


def reuse(source: Path, target_dir: Path, target: int = TARGET) -> dict | None:
    """The catalog an earlier run built in `target_dir` (BENCH_DIR keeps it), brought up to
    this checkout as a user's catalog would be: pending migrations applied by `store.open_db`,
    then the summaries counted again as the next harvest ends. None when there is none, or it
    was copied from another source or to another size (then it is built again)."""
    path = target_dir / "catalog.db"
    stamp_path = target_dir / BUILD_STAMP
    if not (path.exists() and stamp_path.exists()):
        return None
    stamp = json.loads(stamp_path.read_text())
    if (
        stamp.get("source") != _source_identity(source)
        or stamp.get("target") != target
        or stamp.get("tables") != PER_ARTICLE
    ):
        return None
    import sqlite_utils

    from harvest import store, summaries

    start = time.perf_counter()
    db = store.open_db(path)
    migrated = time.perf_counter() - start
    summarised = summaries.refresh(sqlite_utils.Database(db.conn))
    db.execute("pragma journal_mode=delete")  # served as it was built: one file, no WAL
    db.conn.close()
    log(
        f"catalog: reused {path} (built {stamp['built_at']}); migrations {migrated:.0f} s, summaries {summarised:.0f} s"
    )
    return {
        **stamp["built"],
        "reused_from": stamp["built_at"],
        "seconds_on_reuse": {"migrations": round(migrated, 1), "summaries": round(summarised, 1)},
        "db_gib": round(path.stat().st_size / 2**30, 2),
    }


def stamp_build(source: Path, target_dir: Path, built: dict, target: int = TARGET) -> None:
    stamp = {
        "source": _source_identity(source),
        "target": target,
        "tables": PER_ARTICLE,  # a catalog copied with other tables is built again
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "built": built,
    }
    (target_dir / BUILD_STAMP).write_text(json.dumps(stamp, indent=1) + "\n")


def config_dir(target_dir: Path) -> None:
    """Every file of db/ except its databases, beside the bench catalog (as publish copies do)."""
    source = ROOT / "db"
    for item in source.iterdir():
        if item.suffix in (".db", ".db-wal", ".db-shm", ".lock") or item.name == "inspect-data.json":
            continue
        dest = target_dir / item.name
        if item.is_dir():
            shutil.copytree(item, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(item, dest)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(client, url: str) -> tuple[float, int]:
    start = time.perf_counter()
    try:
        response = client.get(url, timeout=60)
        status = response.status_code
    except Exception:  # noqa: BLE001 - a timeout or reset counts as a failed request
        status = 0
    return (time.perf_counter() - start) * 1000, status


def _measure(base: str, urls: list[str], requests: int = REQUESTS, seconds: float = SECONDS) -> dict:
    import httpx

    with httpx.Client(base_url=base) as client:
        _get(client, urls[0])  # warm-up: first touch of the page's tables
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    counter = iter(range(requests))

    def worker():
        with httpx.Client(base_url=base) as client:
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                ms, status = _get(client, urls[i % len(urls)])
                with lock:
                    latencies.append(ms)
                    statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()

    def pct(p):
        return round(latencies[min(len(latencies) - 1, int(math.ceil(p * len(latencies))) - 1)], 1)

    return {
        "requests": len(latencies),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "max_ms": round(latencies[-1], 1),
        "errors": sum(1 for s in statuses if s != 200),
        "example": urls[0],
    }


def pages(catalog: Path, base: str) -> dict[str, list[str]]:
    from urllib.parse import quote

    import httpx

    conn = sqlite3.connect(catalog)
    pmids = [r[0] for r in conn.execute("select pmid from articles order by random() limit 200")]
    ppr_ids = [r[0] for r in conn.execute("select ppr_id from preprints order by random() limit 50")]
    design = conn.execute(
        "select study_design from articles where study_design != 'other' group by 1 order by count(*) desc limit 1"
    ).fetchone()[0]
    year = conn.execute(
        "select pub_year from articles where study_design = ? group by 1 order by count(*) desc limit 1", [design]
    ).fetchone()[0]
    conn.close()
    out = {
        "search": [f"/catalog/search?q={quote(t)}" for t in SEARCH_TERMS],
        "articles_faceted": ["/catalog/articles"],
        "articles_faceted_filtered": [f"/catalog/articles?study_design={design}"],
        # Two filters: no summary answers this page, its facets are counted live.
        "articles_faceted_two_filters": [f"/catalog/articles?study_design={design}&pub_year={year}"],
        "article_page": [f"/catalog/articles/{p}" for p in pmids],
        "front_page": ["/"],
        # The evidence map: each axis, unfiltered and narrowed (route, comparator, years), and its JSON.
        "evidence_map": [
            "/-/evidence-map",
            "/-/evidence-map?axis=outcome&route=intravenous",
            "/-/evidence-map?axis=theme&comparator=placebo&from=2015&to=2024",
            "/-/evidence-map?axis=population_molecule&route=intranasal&from=2010",
        ],
        "evidence_map_json": ["/-/evidence-map.json", "/-/evidence-map.json?axis=outcome&from=2000"],
        # The preprints beside them (add_preprints): the map of preprints, and a preprint's page.
        "evidence_map_preprints": ["/-/evidence-map?kind=preprint", "/-/evidence-map?kind=preprint&axis=theme"],
        "preprint_page": [f"/catalog/preprints/{p}" for p in ppr_ids],
    }
    queries = httpx.get(base + "/catalog.json", timeout=120).json().get("queries", [])
    for q in queries:
        name = q["name"]
        if name == "search":
            continue
        params = q.get("params") or re.findall(r"(?<![:\w]):([A-Za-z_]\w*)", q.get("sql") or "")
        if "q" in params:
            out[f"query:{name}"] = [f"/catalog/{name}?q={quote(t)}" for t in SEARCH_TERMS]
        else:
            out[f"query:{name}"] = [f"/catalog/{name}"]
    return out


def made_each_time(url: str, sql_time_limit_ms: int) -> str:
    """`url` as a request the catalog answers by making the page, not from its page cache.

    The catalog keeps each page it made for up to 60 s (`pages_made_once_per_harvest` in
    db/plugins/catalog.py), so after the warm-up every request for one URL would be a copy:
    what is measured here is what making the page costs, as the first visitor after a
    harvest and every new URL (another search, another pair of facet values) pay it.
    `_timelimit` is never cached; set to the limit the catalog already has, it changes nothing
    else. Pages under /-/ are never cached."""
    if url.startswith("/-/"):
        return url
    return url + ("&" if "?" in url else "?") + f"_timelimit={sql_time_limit_ms}"


def serve_and_measure(target_dir: Path) -> dict:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "datasette", "serve", str(target_dir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        import httpx

        for _ in range(600):
            try:
                if httpx.get(base + "/-/versions.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode()[-2000:])
            time.sleep(0.2)
        results = {}
        limit = json.loads((target_dir / "settings.json").read_text())["sql_time_limit_ms"]
        for name, urls in pages(target_dir / "catalog.db", base).items():
            results[name] = {**_measure(base, [made_each_time(url, limit) for url in urls]), "example": urls[0]}
            log(
                f"  {name}: p50 {results[name]['p50_ms']} ms, p95 {results[name]['p95_ms']} ms"
                + (f", {results[name]['errors']} errors" if results[name]["errors"] else "")
            )
        return results
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


PREPRINT_CLONES = 100  # copies of each real preprint of Europe PMC's recorded answer (24): 2,400


def add_preprints(target_dir: Path) -> dict:
    """The topic's preprints beside the million articles, once per catalog (BENCH_DIR keeps them):
    each real preprint of Europe PMC's recorded answers (tests/europepmc_stand_in.py) cloned
    PREPRINT_CLONES times under new PPR ids and DOIs, parsed, stored and tagged
    (`store.save_preprints`, a page of 1,000 at a time, as a run stores them) and linked to the
    million records by DOI and by title (`store.link_preprints`, what every preprints run does
    again): those two steps are timed. The run's other step, asking Europe PMC for the core
    records of catalog PMIDs, is requests (bench/request_economy.py counts them), not the
    catalog's work."""
    import copy

    import sqlite_utils

    from harvest import europepmc, store, summaries
    from tests.europepmc_stand_in import World

    path = target_dir / "catalog.db"
    db = store.open_db(path)
    try:
        have = db.execute("select count(*) from preprints").fetchone()[0]
        if have:
            log(f"catalog: {have:,} preprints already stored")
            return {"preprints": have, "reused": True}
        real = World().preprints()
        clones = []
        for k in range(PREPRINT_CLONES):
            for r in real:
                clone = {**copy.deepcopy(r), "id": f"PPR{90_000_000 + len(clones)}"}
                if clone.get("doi"):
                    clone["doi"] = f"{clone['doi']}.bench{k}"
                clones.append(europepmc.parse_preprint(clone))
        run_id = store.start_source_run(
            db, source="preprints", mode="full", query_version="bench", query_text="bench clones", window_from=None
        )
        start = time.perf_counter()
        for i in range(0, len(clones), 1000):
            store.save_preprints(db, clones[i : i + 1000], run_id)
        saved = time.perf_counter() - start
        start = time.perf_counter()
        linked = store.link_preprints(db, run_id)
        link_seconds = time.perf_counter() - start
        store.finish_run(db, run_id, status="success", new=len(clones), records_stored=len(clones))
        summaries.refresh(sqlite_utils.Database(db.conn))
        db.execute("pragma journal_mode=delete")
        log(
            f"catalog: {len(clones):,} preprints stored and tagged in {saved:.1f} s, "
            f"linked to the million records in {link_seconds:.1f} s ({linked or 'none linked'})"
        )
        return {
            "preprints": len(clones),
            "save_seconds": round(saved, 1),
            "link_seconds": round(link_seconds, 1),
            "link_ms_per_preprint": round(1000 * link_seconds / len(clones), 2),
            "linked": linked,
        }
    finally:
        db.conn.close()


def run(workdir: Path, source: Path) -> dict:
    target_dir = workdir / "catalog_1m"
    with LoadSampler() as load:
        built = reuse(source, target_dir)
        if built is None:
            log(f"catalog: building {TARGET:,} articles from {source.name}")
            built = build(source, target_dir)
            stamp_build(source, target_dir, built)
        log(f"  {built}")
        built["preprints"] = add_preprints(target_dir)
        config_dir(target_dir)
        built["load"] = load.summary()
    with LoadSampler() as load:
        latency = serve_and_measure(target_dir)
    search_like = ["search", "article_page"]
    faceted = ["articles_faceted", "articles_faceted_filtered", "articles_faceted_two_filters"]
    evidence_map = ["evidence_map", "evidence_map_json", "evidence_map_preprints"]
    return {
        "build": built,
        "latency": latency,
        "load": load.summary(),
        "concurrency": CONCURRENCY,
        "goals": {
            "search_and_article_p95_under_200ms": all(latency[k]["p95_ms"] < 200 for k in search_like),
            "faceted_p95_under_500ms": all(latency[k]["p95_ms"] < 500 for k in faceted),
            "evidence_map_p95_under_500ms": all(latency[k]["p95_ms"] < 500 for k in evidence_map),
            "canned_queries_p95_under_500ms": all(
                v["p95_ms"] < 500 for k, v in latency.items() if k.startswith("query:")
            ),
        },
    }


if __name__ == "__main__":
    # python -m bench.catalog SOURCE_DB WORKDIR [build|serve]
    source, workdir = Path(sys.argv[1]), Path(sys.argv[2])
    step = sys.argv[3] if len(sys.argv) > 3 else "all"
    if step == "build":
        built = build(source, workdir / "catalog_1m")
        stamp_build(source, workdir / "catalog_1m", built)
        print(json.dumps(built))
        config_dir(workdir / "catalog_1m")
    elif step == "serve":
        print(json.dumps(serve_and_measure(workdir / "catalog_1m"), indent=1))
    else:
        print(json.dumps(run(workdir, source), indent=1))
