"""`harvest.evaluate` on the real shared PubMed records (parsed once, shared with test_tags)."""

from __future__ import annotations

import pytest

from harvest import evaluate as E
from tests.test_tags import load_shared_records


@pytest.fixture(scope="module")
def report():
    return E.evaluate(load_shared_records())


# -- pieces ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k,n,lo,hi", [
    (5, 10, 0.2366, 0.7634),   # the textbook example
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (1, 2, 0.0945, 0.9055),
])
def test_wilson_interval_known_values(k, n, lo, hi):
    got = E.wilson_interval(k, n)
    assert got[0] == pytest.approx(lo, abs=5e-4)
    assert got[1] == pytest.approx(hi, abs=5e-4)


def test_wilson_interval_without_observations():
    assert E.wilson_interval(0, 0) == (0.0, 1.0)


def test_report_split_is_pmid_modulo_5():
    assert E.report_split(400000) and E.report_split("33984395")
    assert not E.report_split(399999) and not E.report_split(33984391)


def test_score_arithmetic():
    s = E.score([True, True, False, False, True], [True, False, True, False, True])
    assert (s.tp, s.fp, s.fn) == (2, 1, 1)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 / 3)


# -- the evaluation on the shared records ---------------------------------------------------------------


def test_gold_is_the_medline_records_of_the_report_split(report):
    records = {r["pmid"]: r for r in load_shared_records()}
    medline = [p for p, r in records.items() if r["citation_status"] == "MEDLINE"]
    assert report.n_gold == sum(1 for p in medline if p % 5 == 0)
    assert report.n_train == sum(1 for p in medline if p % 5 != 0)
    assert report.n_gold_with_abstract < report.n_gold
    assert report.n_records == len(records)  # versioned citations counted once


def test_figures_on_the_report_split(report):
    """What the text-only tagger reaches on the held-out split (rules-v1). Measured, not asserted
    beyond what it reaches; the issue's targets are checked (and reported) separately below.

    RCT: 1979 records, where the indexers (who read the full text) labelled double-blind trials
    RCT or CCT without the abstract telling which; only an explicit randomisation statement is
    precise, and about half of the RCTs have none (18 of 118 on the tuning split have no abstract
    at all). On the tuning split the rules reach P 0.90 / R 0.53; the report split has only 22 RCTs.
    """
    rct = report.scores["all"]["rct"]["tagger"]
    assert rct.positives == 22
    assert rct.precision >= 0.60 and rct.recall >= 0.40
    cr = report.scores["with_abstract"]["case_report"]["tagger"]
    assert cr.positives == 183
    assert cr.precision >= 0.65 and cr.recall >= 0.50
    animals = report.scores["all"]["animal_study"]["tagger"]
    assert animals.positives == 1275
    assert animals.precision >= 0.85 and animals.recall >= 0.73
    for name in ("systematic_review",):
        s = report.scores["all"][name]["tagger"]
        assert s.recall == 1.0  # 3 of 3
    base = report.scores["all"]["rct"]["baseline"]
    assert base is not None and base.predicted > 0


def test_targets_are_reported_honestly(report):
    """Every target line agrees with the numbers it quotes. On rules-v1 these targets are NOT met
    on the report split: RCT P>=0.80 with R>=0.60; case reports with an abstract P>=0.90 with
    R>=0.75; tagger F1 above the baseline's for case reports, reviews and animal studies (the
    TF-IDF model learns the indexers' broad 1979 notions of "Case Reports", "Review" and
    "Animals" better than readable rules do). The tagger does beat the baseline on RCTs."""
    by_name = {t.name: t for t in report.targets}
    rct = report.scores["all"]["rct"]["tagger"]
    assert by_name["RCT precision >= 0.80 with recall >= 0.60 (all gold records)"].holds == \
        (rct.precision >= 0.80 and rct.recall >= 0.60)
    cr = report.scores["with_abstract"]["case_report"]["tagger"]
    assert by_name["case reports with an abstract: precision >= 0.90 with recall >= 0.75"].holds == \
        (cr.precision >= 0.90 and cr.recall >= 0.75)
    f1_targets = [t for t in report.targets if "F1" in t.name]
    labels_with_20 = [n for n, row in report.scores["all"].items() if row["tagger"].positives >= 20]
    assert len(f1_targets) == len(labels_with_20) == 4
    for t in f1_targets:
        name = t.name.split(":")[0]
        row = report.scores["all"][name]
        assert t.holds == (row["tagger"].f1 > row["baseline"].f1)
    assert by_name["rct: tagger F1 > baseline F1 (22 positives)"].holds
    assert not report.targets_met


def test_format_report_is_a_readable_table(report):
    text = E.format_report(report)
    for name in E.GOLD_LABELS:
        assert name in text
    assert "PMID % 5 == 0" in text and "Wilson" in text
    assert "[NOT MET]" in text and "[ok]" in text
    assert "primary design (articles.study_design)" in text
