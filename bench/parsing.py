"""Parse speed and peak memory: this project's parser beside pubmed_parser and Bio.Entrez.

Each measurement runs in its own process (`python -m bench.parsing one PARSER FILE`), so
its peak resident memory is its own; the file is read from disk, gunzipped on the fly,
by every parser alike. Fields are the distinct leaf paths of the first record's output
(list items counted once), which is how much of a record each parser hands back.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
import warnings
from pathlib import Path

from bench.common import CLONE_PMID_BASE, LoadSampler, log, peak_rss_mib, rss_mib, run_json, write_clone_file

SIZES = (30_000, 120_000)


def _leaf_paths(value, prefix="") -> set[str]:
    if isinstance(value, dict):
        out = set()
        for key, item in value.items():
            out |= _leaf_paths(item, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list):
        out = set()
        for item in value:
            out |= _leaf_paths(item, prefix + "[]")
        return out or {prefix + "[]"}
    return {prefix}


def _ours(path: Path):
    from harvest.pubmed_xml import parse_pubmed_xml

    first, n = None, 0
    with gzip.open(path, "rb") as stream:
        for record in parse_pubmed_xml(stream, source_name=str(path)):
            if record["type"] == "article":
                n += 1
                if first is None:
                    first = {k: v for k, v in record.items() if k not in ("type", "xml")}
    return n, first


def _pubmed_parser(path: Path):
    import pubmed_parser

    first, n = None, 0
    for record in pubmed_parser.parse_medline_xml(str(path)):
        if not record.get("delete"):
            n += 1
            if first is None:
                first = record
    return n, first


def _entrez(path: Path):
    from Bio import Entrez

    with gzip.open(path, "rb") as stream:
        result = Entrez.read(stream)
    articles = result["PubmedArticle"]
    return len(articles), (articles[0] if articles else None)


PARSERS = {"ours": _ours, "pubmed_parser": _pubmed_parser, "entrez": _entrez}
LABELS = {
    "ours": "harvest.pubmed_xml",
    "pubmed_parser": "pubmed_parser 0.5.1 parse_medline_xml",
    "entrez": "Bio.Entrez.read (Biopython)",
}


def one(parser: str, path: Path) -> dict:
    warnings.filterwarnings("ignore")
    if parser == "pubmed_parser":
        import pubmed_parser  # noqa: F401  (imports before the baseline, as for the others)
    elif parser == "entrez":
        from Bio import Entrez  # noqa: F401
    else:
        import harvest.pubmed_xml  # noqa: F401
    before = rss_mib()
    start = time.perf_counter()
    n, first = PARSERS[parser](path)
    seconds = time.perf_counter() - start
    return {
        "parser": parser,
        "records": n,
        "seconds": round(seconds, 2),
        "records_per_s": round(n / seconds),
        "rss_before_mib": before,
        "peak_rss_mib": peak_rss_mib(),
        "peak_growth_mib": round(peak_rss_mib() - before, 1),
        "fields": len(_leaf_paths(json.loads(json.dumps(first, default=str)))) if first else 0,
    }


def run(workdir: Path, *, peers_at_largest: bool = False) -> dict:
    files = {}
    for i, size in enumerate(SIZES):
        log(f"parse: writing a {size:,}-record clone file")
        files[size] = write_clone_file(workdir / f"clones_{size}.xml.gz", size, CLONE_PMID_BASE + 10_000_000 * (i + 1))
    plan = [
        ("ours", SIZES[0]),
        ("pubmed_parser", SIZES[0]),
        ("entrez", SIZES[0]),
        ("ours", SIZES[0]),
        ("pubmed_parser", SIZES[0]),
        ("ours", SIZES[1]),
    ]
    if peers_at_largest:
        plan.append(("pubmed_parser", SIZES[1]))
    runs = []
    with LoadSampler() as load:
        for parser, size in plan:
            log(f"parse: {parser} on {size:,} records")
            result = run_json(["-m", "bench.parsing", "one", parser, str(files[size])])
            result["file_records"] = size
            log(f"  {result}")
            runs.append(result)
    best: dict = {}
    for r in runs:
        key = f"{r['parser']}@{r['file_records']}"
        if key not in best or r["records_per_s"] > best[key]["records_per_s"]:
            best[key] = r
    ours, pp, ez = best[f"ours@{SIZES[0]}"], best[f"pubmed_parser@{SIZES[0]}"], best[f"entrez@{SIZES[0]}"]
    big = best[f"ours@{SIZES[1]}"]
    return {
        "runs": runs,
        "best": best,
        "labels": LABELS,
        "load": load.summary(),
        "goals": {
            "faster_than_both": ours["records_per_s"] > max(pp["records_per_s"], ez["records_per_s"]),
            "more_fields_than_pubmed_parser": ours["fields"] > pp["fields"],
            # flat: the peak grows by less than a tenth between a file and one four times its size
            "peak_memory_flat": big["peak_growth_mib"] <= ours["peak_growth_mib"] * 1.1 + 5,
        },
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["one"]:
        print(json.dumps(one(sys.argv[2], Path(sys.argv[3]))))
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            print(json.dumps(run(Path(d)), indent=1))
