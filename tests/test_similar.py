"""Similar articles: the pure stage on real records, the table the harvester keeps, the page.

Records are the real EFetch answers in ../shared/data/pubmed/records/; the only variants are
derived in code (a clone of a real record under a new PMID; a real record whose title and
abstract NLM "revised" into another real record's).
"""

from __future__ import annotations

import functools
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from harvest import similar, store
from harvest.importer import import_files
from harvest.pubmed_xml import parse_pubmed_xml
from harvest.runner import run_harvest
from harvest.tags import tag_article
from tests.conftest import RECORDS, ROOT
from tests.eutils_stand_in import Corpus, EutilsStandIn
from tests.shared_import import connect_ro, imported_catalog
from tests.test_catalog import Client, copy_config, harvest_settings

KETAMINE_REVIEW = 38011560  # "Ketamine and the neurobiology of depression" (a review)


def real_documents() -> dict[int, dict]:
    docs = {}
    for path in sorted(RECORDS.glob("*.xml")):
        for record in parse_pubmed_xml(path.read_bytes(), source_name=path.name):
            if record["type"] == "article":
                docs[int(record["pmid"])] = similar.document_of(record, tag_article(record))
    return docs


@pytest.fixture(scope="module")
def docs() -> dict[int, dict]:
    return real_documents()


def by_pmid(rows) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for row in rows:
        out.setdefault(row["pmid"], []).append(row)
    return out


def test_shared_terms_are_each_pairs_strongest_common_terms_whatever_the_batch(docs):
    # The refresh works out the shared terms of a whole batch of pairs at once; each list must be
    # what the pair's own intersection gives (shared_terms), in the same order, for any batch size.
    index = similar.build_index(docs.values())
    row = {p: i for i, p in enumerate(index.pmids.tolist())}
    for batch in (7, similar.BATCH):
        rows = list(similar.neighbour_rows(index, batch=batch))
        assert len(rows) > 5 * len(docs)
        for r in rows:
            pair = similar.shared_terms(index, row[r["pmid"]], row[r["similar_pmid"]])
            assert r["shared_terms"] == "; ".join(pair) and 1 <= len(pair) <= similar.SHARED_SHOWN


def test_each_record_gets_at_most_ten_others_best_first_never_itself(docs):
    lists = by_pmid(similar.similar_rows(docs.values()))
    assert len(lists) > 0.9 * len(docs)
    for pmid, rows in lists.items():
        assert 1 <= len(rows) <= 10
        assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
        assert pmid not in {r["similar_pmid"] for r in rows}
        scores = [r["score"] for r in rows]
        assert scores == sorted(scores, reverse=True) and all(0 < s <= 1.0001 for s in scores)
        assert all(r["shared_terms"] for r in rows)  # every neighbour says why


def test_neighbours_are_mostly_mutual(docs):
    pairs = {(r["pmid"], r["similar_pmid"]) for r in similar.similar_rows(docs.values())}
    mutual = sum((b, a) in pairs for a, b in pairs) / len(pairs)
    assert mutual > 0.4, mutual


def test_a_clone_with_the_same_text_is_the_top_neighbour(docs):
    clone_pmid = max(docs) + 1
    clone = {**docs[KETAMINE_REVIEW], "pmid": clone_pmid}
    lists = by_pmid(similar.similar_rows([*docs.values(), clone], [KETAMINE_REVIEW, clone_pmid]))
    assert lists[KETAMINE_REVIEW][0]["similar_pmid"] == clone_pmid
    assert lists[clone_pmid][0]["similar_pmid"] == KETAMINE_REVIEW
    assert lists[KETAMINE_REVIEW][0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert "ketamine" in lists[KETAMINE_REVIEW][0]["shared_terms"].lower()


def test_a_catalog_with_one_record_has_no_neighbours(docs):
    assert similar.similar_rows([docs[KETAMINE_REVIEW]]) == []


def scikit_learn_tfidf(term_lists: list[list[str]]):
    """The reference `similar.tfidf` is held to: scikit-learn's vectorizer, as the harvester
    called it until it stopped importing scikit-learn."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(
        analyzer=lambda terms: terms, lowercase=False, min_df=2, max_df=0.5, sublinear_tf=True, dtype=np.float32
    )
    matrix = vectorizer.fit_transform(term_lists).tocsr()
    return matrix, vectorizer.get_feature_names_out()


def assert_same_tfidf(term_lists: list[list[str]]) -> None:
    matrix, terms = similar.tfidf(iter(term_lists))  # one pass: a generator is enough
    reference, reference_terms = scikit_learn_tfidf(term_lists)
    assert terms.tolist() == reference_terms.tolist()
    assert matrix.shape == reference.shape and matrix.dtype == reference.dtype == np.float32
    # The same values, to the bit, in the same places. Compared with each row's entries in column
    # order: the order scikit-learn leaves them in is a detail of its version's implementation,
    # not part of what it computes, and this must not fail on a newer scikit-learn for that.
    ours, theirs = matrix.copy(), reference.copy()
    ours.sort_indices()
    theirs.sort_indices()
    assert np.array_equal(ours.indptr, theirs.indptr)
    assert np.array_equal(ours.indices, theirs.indices)
    assert np.array_equal(ours.data, theirs.data)


def test_tfidf_is_scikit_learns_value_for_value_on_every_shared_record(tmp_path_factory):
    path, _ = imported_catalog(tmp_path_factory)
    conn = connect_ro(path)
    try:
        term_lists = [similar.terms_of(doc) for doc in store._similar_documents(sqlite_utils.Database(conn))]
    finally:
        conn.close()
    assert len(term_lists) > 30_000
    assert_same_tfidf(term_lists)


@pytest.mark.parametrize("n", range(7))
def test_tfidf_of_a_few_records_is_scikit_learns_or_nothing_where_it_has_nothing(docs, n):
    # max_df is half the records and min_df two, so fewer than four records share nothing.
    term_lists = [similar.terms_of(doc) for doc in list(docs.values())[:n]]
    try:
        scikit_learn_tfidf(term_lists)
    except ValueError:
        with pytest.raises(similar.NothingShared):
            similar.tfidf(term_lists)
        assert n < 4
        return
    assert_same_tfidf(term_lists)


def test_tfidf_of_records_that_share_no_term_is_nothing(docs):
    # A real record's terms dealt out to four documents: no term is in two of them.
    terms = list(dict.fromkeys(similar.terms_of(docs[KETAMINE_REVIEW])))
    dealt = [terms[i::4] for i in range(4)]
    with pytest.raises(ValueError):
        scikit_learn_tfidf(dealt)
    with pytest.raises(similar.NothingShared):
        similar.tfidf(dealt)


def test_the_harvester_keeps_similar_articles_without_scikit_learn_installed(tmp_path):
    # scikit-learn is an extra (evaluation only): an import stores records and their neighbours
    # in a Python where it cannot be imported.
    blocked = "import sys; sys.modules['sklearn'] = None; from harvest.cli import cli; cli()"
    db_path = tmp_path / "c.db"
    files = [str(p) for p in sorted(RECORDS.glob("*.xml"))]
    proc = subprocess.run(
        [sys.executable, "-c", blocked, "import", *files, "--db", str(db_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "similar articles not refreshed" not in proc.stderr
    lists = stored_lists(db_path)
    assert len(lists) > 200 and lists[KETAMINE_REVIEW]


def test_stop_words_are_scikit_learns():
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    assert similar.ENGLISH_STOP_WORDS == ENGLISH_STOP_WORDS


def stored_lists(path: Path) -> dict[int, list[tuple]]:
    conn = sqlite3.connect(path)
    try:
        out: dict[int, list[tuple]] = {}
        for pmid, similar_pmid, score, shared in conn.execute(
            "select pmid, similar_pmid, score, shared_terms from similar_articles order by pmid, rank"
        ):
            out.setdefault(pmid, []).append((similar_pmid, score, shared))
        return out
    finally:
        conn.close()


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("similar-import") / "catalog.db"
    import_files(path, sorted(RECORDS.glob("*.xml")))
    return path


def test_import_fills_similar_articles_for_every_stored_record(imported, docs):
    lists = stored_lists(imported)
    conn = sqlite3.connect(imported)
    stored = {p for (p,) in conn.execute("select pmid from articles")}
    sources = {p for (p,) in conn.execute("select pmid from similar_sources")}
    conn.close()
    assert sources == stored
    assert len(lists) > 0.9 * len(stored)
    for pmid, rows in lists.items():
        assert len(rows) <= 10 and pmid not in {r[0] for r in rows}
        assert {r[0] for r in rows} <= stored
    # the ketamine review's neighbours are about depression or its drugs
    shared = " ".join(r[2] for r in lists[KETAMINE_REVIEW]).lower()
    assert "depress" in shared or "antidepressant" in shared


def test_article_page_shows_similar_articles_with_shared_terms(tmp_path, imported):
    site = copy_config(tmp_path / "site")
    source, copy = sqlite3.connect(imported), sqlite3.connect(site / "catalog.db")
    source.backup(copy)  # the catalog is in WAL mode: copy what it holds, not its main file
    source.close()
    copy.close()
    [(first, title, shared)] = (
        sqlite3.connect(site / "catalog.db")
        .execute(
            "select s.similar_pmid, a.title, s.shared_terms from similar_articles s "
            "join articles a on a.pmid = s.similar_pmid where s.pmid = ? and s.rank = 1",
            [KETAMINE_REVIEW],
        )
        .fetchall()
    )
    client = Client(site)
    try:
        page = client.get(f"/catalog/articles/{KETAMINE_REVIEW}")
    finally:
        client.close()
    assert page.status_code == 200
    html = page.text
    section = html[html.index("<h2>Similar articles</h2>") :]
    section = section[: section.index("</section>")]
    assert f'href="/catalog/articles/{first}"' in section
    import html as html_lib

    assert html_lib.escape(title, quote=False) in section or title in html_lib.unescape(section)
    assert html_lib.unescape(section).count("<li") <= 10
    assert shared.split("; ")[0] in html_lib.unescape(section)


def _donor_part(pattern: bytes, donor: bytes, _match: re.Match[bytes]) -> bytes:
    found = re.search(pattern, donor, re.S)
    assert found is not None, "the donor record has the element too"
    return found.group(0)


def _swap_text(raw: bytes, donor: bytes) -> bytes:
    """The record with the donor's title and abstract (a revision NLM could publish)."""
    for tag in (rb"ArticleTitle", rb"Abstract"):
        pattern = rb"<" + tag + rb"\b[^>]*>.*?</" + tag + rb">"
        raw = re.sub(pattern, functools.partial(_donor_part, pattern, donor), raw, count=1, flags=re.S)
    return raw


def test_harvest_of_a_changed_record_refreshes_it_and_its_neighbours(tmp_path):
    path = tmp_path / "catalog.db"
    corpus = Corpus.cached([RECORDS]).copy()
    donor_pmid = 30578883 if 30578883 in corpus else next(p for p in corpus.pmids() if p != KETAMINE_REVIEW)
    with EutilsStandIn(corpus, enforce_rate_limit=False) as server:
        run_harvest(path, settings=harvest_settings(server))
        before = stored_lists(path)
        listed_it = {p for p, rows in before.items() if KETAMINE_REVIEW in {r[0] for r in rows}}
        assert listed_it  # the review is someone's neighbour before it changes
        donor = server.corpus[donor_pmid].raw
        server.revise(KETAMINE_REVIEW, mdat="2026/01/02", change=lambda raw: _swap_text(raw, donor))
        outcome = run_harvest(path, settings=harvest_settings(server), full=True)
    assert outcome.updated == 1
    after = stored_lists(path)
    # The changed record now has the donor's text: the donor is its nearest record.
    assert after[KETAMINE_REVIEW][0][0] == donor_pmid
    assert after[KETAMINE_REVIEW] != before[KETAMINE_REVIEW]
    # Its old and new neighbours were recomputed against the catalog as it is now: their
    # lists are exactly what a from-scratch computation gives.
    db = store.open_db(path)
    fresh = by_pmid(similar.similar_rows(store._similar_documents(db)))
    touched = listed_it | {r[0] for r in after[KETAMINE_REVIEW]} | {KETAMINE_REVIEW}
    for pmid in touched:
        assert after.get(pmid, []) == [
            (r["similar_pmid"], r["score"], r["shared_terms"]) for r in fresh.get(pmid, [])
        ], pmid
    assert any(after.get(p) != before.get(p) for p in listed_it)


def test_retag_refreshes_the_records_whose_tags_changed(tmp_path, imported):
    from tests.conftest import run_cli

    path = tmp_path / "catalog.db"
    source, copy = sqlite3.connect(imported), sqlite3.connect(path)
    source.backup(copy)
    source.close()
    copy.close()
    as_imported = stored_lists(path)
    # Tags as older rules might have left them: the review without its tags, lists refreshed.
    db = store.open_db(path)
    db.execute("delete from article_tags where pmid = ?", [KETAMINE_REVIEW])
    db.conn.commit()
    assert store.refresh_similar(db) >= 1
    db.conn.close()
    assert stored_lists(path)[KETAMINE_REVIEW] != as_imported[KETAMINE_REVIEW]
    result = run_cli("retag", "--db", path)
    assert result.returncode == 0, result.stderr
    assert stored_lists(path) == as_imported  # the current rules' tags, and the lists they give
