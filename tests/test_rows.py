"""The pure stages on real records, in-process: parse -> tag -> rows, and what a revision changed."""

from __future__ import annotations

import re
import subprocess
import sys
import zlib

import pytest

from harvest import rows
from harvest.pubmed_xml import parse_articles
from harvest.tags import RULES_VERSION, tag_record
from tests.conftest import RECORDS, ROOT


@pytest.fixture(scope="module")
def records():
    return [r for path in sorted(RECORDS.glob("*.xml")) for r in parse_articles(path.read_bytes())]


def _by_pmid(records, pmid):
    (record,) = [r for r in records if r["pmid"] == pmid]
    return record


def test_every_real_record_becomes_rows_of_every_table_it_has(records):
    assert len(records) > 200
    for record in records:
        made = rows.article_rows(record, tag_record(record))
        fingerprint = rows.Fingerprint(record["pmid"], record["pmid_version"], rows.record_sha1(record))
        assert made.fingerprint == fingerprint
        assert made.article["pmid"] == record["pmid"] and made.article["record_sha1"] == fingerprint.sha1
        assert made.article["tags_version"] == RULES_VERSION and made.article["study_design"]
        assert zlib.decompress(made.xml_zlib) == record["xml"]
        assert set(made.children) == set(rows.CHILD_TABLES) - {"article_authors"}
        assert len(made.authorships) == len({(a["role"], a["position"]) for a in record["authors"]})
        assert {key for _, _, _, key, *_ in made.authorships} == set(made.authors)
        assert len(made.children["article_mesh"]) == len(made.mesh_descriptors)
        assert all(row[0] == record["pmid"] for table in made.children.values() for row in table)
        # one tag row per (facet, value), however many rules fired for it
        assert len({(facet, value) for _, facet, value, *_ in made.tagged.tags}) == len(made.tagged.tags)


def test_the_article_row_carries_what_pubmed_says_of_a_real_record(records):
    record = next(r for r in records if r["mesh"] and r["authors"] and r["doi"])
    made = rows.article_rows(record, tag_record(record))
    row = made.article
    assert row["doi"] == record["doi"] and row["journal_iso"] == record["journal_iso"]
    assert row["mesh_terms"].split("; ") == [m["descriptor_name"] for m in record["mesh"]]
    assert row["author_count"] == len([a for a in record["authors"] if a["role"] == "author"])
    first = record["authors"][0]
    assert row["first_author"].startswith(first["last_name"] or first["collective_name"])
    # the run's own columns are the store's to decide, never the rows stage's
    assert not {"first_seen_run", "last_changed_run", "last_fetched_run", "matches_query"} & set(row)


def test_the_rows_stage_is_the_same_for_the_same_record(records):
    record = records[0]
    again = next(parse_articles(record["xml"]))
    assert rows.article_rows(record, tag_record(record)) == rows.article_rows(again, tag_record(again))


def test_a_revision_reads_as_events_a_researcher_can_follow(records):
    record = next(r for r in records if r["mesh"] and r["publication_types"] and r["abstract"])
    old_mesh = {m["descriptor_name"] for m in record["mesh"]}
    old = {
        "title": record["title"],
        "abstract": "an earlier abstract",
        "citation_status": "In-Process",
        "is_retracted": 0,
        "mesh": (old_mesh - {record["mesh"][0]["descriptor_name"]}) | {"Withdrawn Heading"},
        "pub_types": {pt["name"] for pt in record["publication_types"]},
        "refs": set(),
    }
    made = rows.article_rows(record, tag_record(record))
    events = dict(rows.change_events(old, made))
    assert events["mesh_added"] == record["mesh"][0]["descriptor_name"]
    assert events["mesh_removed"] == "Withdrawn Heading"
    assert "abstract_changed" in events and "title_changed" not in events
    assert events["citation_status_changed"] == f"In-Process -> {record['citation_status']}"
    assert "publication_type_added" not in events and "retracted" not in events


def test_a_retraction_and_an_erratum_are_events(records):
    record = next(r for r in records if r["comments_corrections"])
    xml = re.sub(
        rb"(<CommentsCorrectionsList>)",
        rb'\1<CommentsCorrections RefType="RetractionIn"><RefSource>x</RefSource><PMID>99</PMID>'
        rb'</CommentsCorrections><CommentsCorrections RefType="ErratumIn"><RefSource>y</RefSource>'
        rb"<PMID>98</PMID></CommentsCorrections>",
        record["xml"],
        count=1,
    )
    revised = next(parse_articles(xml))
    made = rows.article_rows(revised, tag_record(revised))
    old = {
        "title": revised["title"],
        "abstract": revised["abstract"],
        "citation_status": revised["citation_status"],
        "is_retracted": 0,
        "mesh": set(made.mesh_descriptors.values()),
        "pub_types": set(made.publication_types.values()),
        "refs": {(c["ref_type"], c["ref_pmid"]) for c in record["comments_corrections"]},
    }
    assert made.article["is_retracted"] == 1 and made.article["has_correction"] == 1
    assert rows.change_events(old, made) == [("retracted", "99"), ("correction_added", "ErratumIn 98")]


def test_an_unchanged_record_changes_nothing(records):
    record = next(r for r in records if r["mesh"])
    made = rows.article_rows(record, tag_record(record))
    old = {
        **{k: made.article[k] for k in ("title", "abstract", "citation_status", "is_retracted")},
        "mesh": set(made.mesh_descriptors.values()),
        "pub_types": set(made.publication_types.values()),
        "refs": {(c[2], c[3]) for c in made.children["comments_corrections"]},
    }
    assert rows.change_events(old, made) == []


def test_tag_rows_keep_one_row_per_facet_and_value_and_the_verdicts():
    from harvest.tags import Tagging

    tagging = Tagging(
        tags=[
            {"facet": "design", "value": "rct", "method": "publication_type", "evidence": "RCT", "confidence": 1.0},
            {"facet": "design", "value": "rct", "method": "rule:design.rct", "evidence": "randomized"},
            {"facet": "depression", "value": "psychiatric", "method": "rule:x", "evidence": "MDD"},
        ],
        study_design="rct",
        awaiting_indexing=False,
        psychiatric=True,
    )
    tagged = rows.tag_rows(7, tagging)
    assert tagged.tags == [
        (7, "design", "rct", "publication_type", "RCT", 1.0),
        (7, "depression", "psychiatric", "rule:x", "MDD", None),
    ]
    assert tagged.columns == {
        "study_design": "rct",
        "awaiting_indexing": 0,
        "tags_version": RULES_VERSION,
        "psychiatric": 1,
    }


def test_the_pure_stages_import_no_database_or_network_module():
    probe = (
        "import sys\n"
        "import harvest.pubmed_xml, harvest.tags, harvest.query, harvest.design_model, harvest.rows\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'sqlite3', 'sqlite_utils', 'requests', 'urllib3', 'http', 'socket'} "
        "or m in {'harvest.store', 'harvest.eutils', 'harvest.http', 'harvest.schema'})\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_module_of_harvest_imports_another_in_a_cycle():
    """Every import counts, inside functions too: a migration importing the writer was one."""
    import ast

    graph: dict[str, set[str]] = {}
    for path in (ROOT / "harvest").glob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    names.add(node.module.split(".")[0])
                else:
                    names.update(alias.name for alias in node.names)
        # `python -m harvest.evaluate` and `.train_tagger` are thin aliases that call the CLI:
        # an entry point, which nothing of the pipeline imports.
        names.discard("cli")
        graph[path.stem] = {n for n in names if (ROOT / "harvest" / f"{n}.py").exists()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert [m for m in sorted(graph) if reaches(m, m, set())] == []
