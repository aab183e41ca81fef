"""`python -m bench.similar [CLONES]`: what similar articles cost, and how good they are.

Quality: every real record in ../shared/data/pubmed (about 35,000) is indexed; for each
record, the share of its neighbours with the same primary design, and the share sharing at
least one MeSH major topic, beside the same shares for random records (chance). PubMed's own
related-articles lists (the ELink answers in ../shared/data) cannot be used: of their linked
records none but the query record itself is stored.

Cost: the real records are cloned in code CLONES times (default 3: new PMIDs, same text;
never written to disk), and the index build (one pass, per 1,000 records) and the neighbour
lists of 1,000 records are timed at 1x and (1+CLONES)x the real size, with peak memory.
"""

from __future__ import annotations

import gzip
import random
import resource
import sys
import time
from pathlib import Path

from harvest import similar
from harvest.pubmed_xml import parse_pubmed_xml
from harvest.tags import primary_design, tag_article

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pubmed"


def real_documents() -> tuple[dict[int, dict], dict[int, tuple]]:
    docs, facts = {}, {}
    for path in sorted(p for p in DATA.rglob("*") if p.is_file() and p.name.endswith((".xml", ".xml.gz"))):
        raw = gzip.open(path).read() if path.name.endswith(".gz") else path.read_bytes()
        try:
            records = list(parse_pubmed_xml(raw, source_name=path.name))
        except Exception:  # noqa: BLE001 - eLinkResult, eSummaryResult: not records
            continue
        for record in records:
            if record.get("type") != "article":
                continue
            tags = tag_article(record)
            doc = similar.document_of(record, tags)
            docs[doc["pmid"]] = doc
            facts[doc["pmid"]] = (
                primary_design(tags),
                {m["descriptor_name"] for m in record.get("mesh") or [] if m.get("major")},
            )
    return docs, facts


def quality(docs, facts, *, without_design_tags: bool = False) -> dict:
    values = list(docs.values())
    if without_design_tags:
        values = [{**d, "tags": [t for t in d["tags"] if t[0] != "design"]} for d in values]
    lists: dict[int, list[int]] = {}
    for row in similar.similar_rows(values):
        lists.setdefault(row["pmid"], []).append(row["similar_pmid"])
    rnd, pmids = random.Random(1), list(docs)
    design, design_chance, mesh, mesh_chance = [], [], [], []
    for pmid, others in lists.items():
        kind, major = facts[pmid]
        chance = [rnd.choice(pmids) for _ in others]
        if kind and kind != "other":
            design.append(sum(facts[o][0] == kind for o in others) / len(others))
            design_chance.append(sum(facts[o][0] == kind for o in chance) / len(chance))
        if major:
            mesh.append(sum(bool(facts[o][1] & major) for o in others) / len(others))
            mesh_chance.append(sum(bool(facts[o][1] & major) for o in chance) / len(chance))
    mean = lambda xs: round(sum(xs) / len(xs), 3)  # noqa: E731
    return {
        "records": len(docs),
        "with_neighbours": len(lists),
        "same_design": mean(design),
        "same_design_chance": mean(design_chance),
        "design_records": len(design),
        "shares_major_mesh": mean(mesh),
        "shares_major_mesh_chance": mean(mesh_chance),
        "mesh_records": len(mesh),
    }


def cost(docs, copies: int) -> dict:
    base = list(docs.values())
    top = max(docs) + 1

    def stream():
        for c in range(copies):
            for d in base:
                yield d if c == 0 else {**d, "pmid": d["pmid"] + c * top}

    started = time.perf_counter()
    index = similar.build_index(stream())
    built = time.perf_counter() - started
    sample = index.pmids[:: max(1, len(index.pmids) // 1000)][:1000].tolist()
    started = time.perf_counter()
    n_rows = sum(1 for _ in similar.neighbour_rows(index, sample))
    listed = time.perf_counter() - started
    return {
        "records": len(index.pmids),
        "nnz": int(index.matrix.nnz),
        "build_s_per_1000": round(built / len(index.pmids) * 1000, 3),
        "neighbours_s_per_1000": round(listed / len(sample) * 1000, 2),
        "rows": n_rows,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main(argv: list[str]) -> None:
    clones = int(argv[0]) if argv else 3
    docs, facts = real_documents()
    print("quality (design tags in):", quality(docs, facts), flush=True)
    print("quality (design tags out):", quality(docs, facts, without_design_tags=True), flush=True)
    print("cost 1x:", cost(docs, 1), flush=True)
    print(f"cost {1 + clones}x:", cost(docs, 1 + clones), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
