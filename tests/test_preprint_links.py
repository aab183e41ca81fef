"""The title + first author + year match of harvest/preprint_links.py, on real records: its
threshold keeps edited true pairs together and real near misses apart (bench/preprint_links.py
measures the same on every shared record; here the modern records' folders, for speed)."""

from __future__ import annotations

import pytest

from bench.preprint_links import DATA, abstract_true_pair_scores, near_miss_scores, real_papers, true_pair_scores
from harvest.preprint_links import (
    ABSTRACT_OVERLAP,
    TITLE_THRESHOLD,
    Candidate,
    abstract_overlap,
    author_overlap,
    best_title_match,
    different_works,
    normal_doi,
)


@pytest.fixture(scope="module")
def papers() -> list[dict]:
    paths = sorted(p for p in DATA.rglob("*.xml") if p.is_file()) + [DATA / "medline16n0902.xml.gz"]
    return real_papers(paths)


def test_edited_titles_of_real_records_still_match_their_record(papers):
    scores = true_pair_scores(papers, per_edit=300)
    share = {name: sum(s >= TITLE_THRESHOLD for s in values) / len(values) for name, values in scores.items()}
    for edit in ("case and period", "punctuation", "british spelling"):
        assert share[edit] == 1.0, (edit, share)
    for edit in ("a word replaced", "a word dropped", "a phrase added"):
        assert share[edit] >= 0.95, (edit, share)
    assert share["two edits"] >= 0.85, share
    assert share["subtitle dropped (known miss)"] < 0.5  # said in the README: DOI or Europe PMC's link needed


def test_real_near_misses_stay_under_the_threshold(papers):
    misses = near_miss_scores(papers, top=20)
    assert misses and all(score < TITLE_THRESHOLD for score, _, _ in misses), misses[:3]


def test_an_authors_other_paper_one_word_apart_is_told_apart_by_its_co_authors():
    # Real records in records-mokztk-pubmed-parser/CPFE.xml: two works by Cottin, 2011 and 2012.
    other = Candidate(
        22781207,
        "Combined pulmonary fibrosis and emphysema in connective tissue disease.",
        "Cottin",
        2012,
        None,
        ("Cottin", "Cordier"),
    )
    title = "Combined pulmonary fibrosis and emphysema syndrome in connective tissue disease."
    surnames = ("Cottin", "Nunes", "Mouthon")
    assert author_overlap(surnames, other.surnames) == 0.25
    assert best_title_match(title, "Cottin", 2011, [other], surnames) is None
    own = Candidate(20936629, title, "Cottin", 2011, None, surnames)
    match = best_title_match(title, "Cottin", 2011, [other, own], surnames)
    assert match is not None and (match.pmid, match.score) == (20936629, 1.0)


def test_parts_of_a_series_and_replies_are_different_works():
    # Real titles: PMIDs 415369 and 416495 (pubmed20n0014), 33496046 (pubmed21n1298).
    assert different_works("Medical treatment of epilepsy: part I.", "Medical treatment of epilepsy: Part II.")
    assert different_works(
        "Response to letter to the editor regarding the efficacy of adding rituximab",
        "The efficacy of adding rituximab",
    )
    assert different_works("Ketamine in 1,000 patients", "Ketamine in 1000 patients") is None


def test_two_records_equally_like_a_preprint_link_neither():
    title = "Combined pulmonary fibrosis and emphysema in connective tissue disease."
    twins = [Candidate(pmid, title, "Cottin", 2012, None) for pmid in (1, 2)]
    assert best_title_match(title, "Cottin", 2012, twins) is None


def test_a_doi_is_compared_without_its_resolver_and_version():
    assert normal_doi("https://doi.org/10.21203/rs.3.rs-6664819/v1") == "10.21203/rs.3.rs-6664819"
    assert normal_doi("10.1101/2025.06.13.25329599v2") == "10.1101/2025.06.13.25329599"
    assert normal_doi("10.1186/s12891-022-05070-w") == "10.1186/s12891-022-05070-w"


def test_edited_abstracts_of_real_records_still_match_their_record(papers):
    scores = abstract_true_pair_scores(papers, per_edit=300)
    assert len(scores["numbers changed"]) == 300
    share = {name: sum(s >= ABSTRACT_OVERLAP for s in values) / len(values) for name, values in scores.items()}
    for edit, kept in share.items():
        assert kept >= (0.99 if edit.startswith("all at once") else 1.0), (edit, share)


def test_a_teams_sibling_paper_one_title_word_apart_is_told_apart_by_its_abstract():
    # Real records of pubmed21n1298-part1: two Cryo-EM reviews by one team, titles 0.87 alike.
    (file,) = [DATA / "pubmed21n1298-part1.xml.gz"]
    by_pmid = {p["pmid"]: p for p in real_papers([file]) if p["pmid"] in (33860329, 33970243)}
    preprint, sibling = by_pmid[33860329], by_pmid[33970243]

    def candidate(p, with_abstract=True):
        return Candidate(
            p["pmid"],
            p["title"],
            p["surname"],
            p["year"],
            None,
            p["surnames"],
            p["abstract"] if with_abstract else None,
        )

    args = (preprint["title"], preprint["surname"], preprint["year"])
    overlap = abstract_overlap(preprint["abstract"], sibling["abstract"])
    assert overlap is not None and overlap < ABSTRACT_OVERLAP
    # Only the sibling stored: without abstracts the title and authors would link it; with them, nothing.
    wrong = best_title_match(*args, [candidate(sibling, with_abstract=False)], preprint["surnames"])
    assert wrong is not None and wrong.pmid == 33970243 and wrong.score >= TITLE_THRESHOLD
    assert best_title_match(*args, [candidate(sibling)], preprint["surnames"], preprint["abstract"]) is None
    # Its own record stored beside the sibling: linked to it.
    own = best_title_match(*args, [candidate(sibling), candidate(preprint)], preprint["surnames"], preprint["abstract"])
    assert own is not None and own.pmid == 33860329
