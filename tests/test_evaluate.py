"""`harvest.evaluate` on the real shared PubMed records (parsed once, shared with test_tags)."""

from __future__ import annotations

import sys

import pytest

from harvest import design_model as D
from harvest import evaluate as E
from tests.test_tags import load_shared_records


@pytest.fixture(scope="module")
def report():
    return E.evaluate(load_shared_records())


@pytest.fixture(scope="module")
def by_pmid_latest():
    return {r["pmid"]: r for r in E._latest_versions(load_shared_records())}


# -- pieces ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "k,n,lo,hi",
    [
        (5, 10, 0.2366, 0.7634),  # the textbook example
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (1, 2, 0.0945, 0.9055),
    ],
)
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
    """What the text-only tagger (rules-v5: rules plus the design model design-v2) reaches on the
    held-out split of the shared records (records-OWNER-NAME folders and the 2016 slice included). Measured, not asserted beyond what it reaches (floors a little under the
    measured figures, so a regression fails); the issue's targets are checked separately below.

    RCT: 1977-79 records, where the indexers (who read the full text) labelled double-blind trials
    RCT or CCT without the abstract telling which; about half of the RCTs say nothing a reader
    could tell them by (18 of 118 on the training split have no abstract at all). Out of fold on
    the training split the model reaches P 0.78 / R 0.61; the report split has only 22 RCTs.
    """
    rct = report.scores["all"]["rct"]["tagger"]
    assert rct.positives == 26
    assert rct.precision >= 0.55 and rct.recall >= 0.50
    cr = report.scores["with_abstract"]["case_report"]["tagger"]
    assert cr.positives == 201
    assert cr.precision >= 0.72 and cr.recall >= 0.70
    animals = report.scores["all"]["animal_study"]["tagger"]
    assert animals.positives == 1298
    assert animals.precision >= 0.84 and animals.recall >= 0.85
    review = report.scores["all"]["review"]["tagger"]
    assert review.positives == 243
    assert review.f1 >= 0.43
    s = report.scores["all"]["systematic_review"]["tagger"]
    assert s.recall == 1.0  # 3 of 3, by the rules
    base = report.scores["all"]["rct"]["baseline"]
    assert base is not None and base.predicted > 0


def test_era_is_the_publication_year():
    assert E.era_of({"pub_year": 2021}) == "modern" and E.era_of({"pub_year": 2000}) == "modern"
    assert E.era_of({"pub_year": 1999}) is None and E.era_of({"pub_year": 1985}) is None
    assert E.era_of({"pub_year": 1979}) == "1970s" and E.era_of({"pub_year": 1970}) == "1970s"
    assert E.era_of({"pub_year": None}) is None and E.era_of({}) is None


def test_modern_and_1970s_figures_are_computed_on_their_own_records(report, by_pmid_latest):
    """The modern (2000 or later) and 1970s tables count exactly the report-split MEDLINE records of
    their publication years, and each cell is the tagger's text-only verdict on those records."""
    from harvest import tags as T

    gold = [r for r in by_pmid_latest.values() if r["citation_status"] == "MEDLINE" and E.report_split(r["pmid"])]
    modern = [r for r in gold if r["pub_year"] and r["pub_year"] >= 2000]
    seventies = [r for r in gold if r["pub_year"] and 1970 <= r["pub_year"] <= 1979]
    assert report.subset_sizes["modern"] == len(modern) >= 200
    assert report.subset_sizes["1970s"] == len(seventies) >= 4000
    assert report.subset_sizes["all"] == report.n_gold > len(modern) + len(seventies)  # other years: "all" only
    for era, records in (("modern", modern), ("1970s", seventies)):
        designs = [
            {t["value"] for t in T.tag_article(r, use_indexing=False) if t["facet"] == "design"} for r in records
        ]
        for name, label in E.GOLD_LABELS.items():
            expected = E.score([label.gold(r) for r in records], [bool(d & label.design_values) for d in designs])
            assert report.scores[era][name]["tagger"] == expected, (era, name)
    # the modern records carry the reviews and case reports issue 21 is about
    assert report.scores["modern"]["review"]["tagger"].positives == 44
    assert report.scores["modern"]["case_report"]["tagger"].positives == 26


def test_modern_and_1970s_figures_are_printed_separately(report):
    text = E.format_report(report)
    modern = f"modern gold records (published 2000 or later) ({report.subset_sizes['modern']})"
    seventies = f"1970s gold records (published 1970-1979) ({report.subset_sizes['1970s']})"
    assert modern in text and seventies in text
    block = text.split(modern)[1].split(seventies)[0]
    review = report.scores["modern"]["review"]["tagger"]
    row = next(line for line in block.splitlines() if line.startswith("review "))
    assert row.split("|")[0].split()[1] == str(review.positives)
    assert f"{review.recall:5.2f} [" in row
    by_name = {t.name: t for t in report.targets}
    cr = report.scores["modern"]["case_report"]["tagger"]
    assert by_name["case reports, modern records: precision >= 0.85 (issue 21)"].holds == (cr.precision >= 0.85)
    assert by_name["narrative reviews, modern records: recall >= 0.85 (issue 21)"].holds == (review.recall >= 0.85)
    assert "[ok] case reports, modern records" in text or "[NOT MET] case reports, modern records" in text


def test_targets_are_reported_honestly(report):
    """Every target line agrees with the numbers it quotes. With rules-v5 the tagger beats the
    baseline's F1 on RCTs, case reports, reviews and animal studies on the report split; the precision
    targets (RCT P>=0.80 with R>=0.60, case reports with an abstract P>=0.90 with R>=0.75) are not
    met (README, "Measured, not asserted", says why)."""
    by_name = {t.name: t for t in report.targets}
    rct = report.scores["all"]["rct"]["tagger"]
    assert by_name["RCT precision >= 0.80 with recall >= 0.60 (all gold records)"].holds == (
        rct.precision >= 0.80 and rct.recall >= 0.60
    )
    cr = report.scores["with_abstract"]["case_report"]["tagger"]
    assert by_name["case reports with an abstract: precision >= 0.90 with recall >= 0.75"].holds == (
        cr.precision >= 0.90 and cr.recall >= 0.75
    )
    f1_targets = [t for t in report.targets if "F1" in t.name]
    labels_with_20 = [n for n, row in report.scores["all"].items() if row["tagger"].positives >= 20]
    assert len(f1_targets) == len(labels_with_20) == 4
    for t in f1_targets:
        name = t.name.split(":")[0]
        row = report.scores["all"][name]
        assert t.holds == (row["tagger"].f1 > row["baseline"].f1)
    assert by_name["rct: tagger F1 > baseline F1 (26 positives)"].holds
    assert by_name["case_report: tagger F1 > baseline F1 (400 positives)"].holds
    assert by_name["animal_study: tagger F1 > baseline F1 (1298 positives)"].holds
    assert by_name["review: tagger F1 > baseline F1 (243 positives)"].holds
    assert report.targets_met == all(t.holds for t in report.targets)


def test_format_report_is_a_readable_table(report):
    text = E.format_report(report)
    for name in E.GOLD_LABELS:
        assert name in text
    assert "PMID % 5 == 0" in text and "Wilson" in text
    assert "[ok]" in text
    assert ("[NOT MET]" in text) == (not report.targets_met)
    assert "primary design (articles.study_design)" in text
    ceilings = D.load_model().data["cv"]
    assert (
        f"  rct: precision {ceilings['rct']['ceiling']['best_precision']:.2f} at recall >= 0.60 (all records)" in text
    )
    assert (
        f"  case_report: precision {ceilings['case_report']['ceiling']['best_precision']:.2f} at recall >= 0.75 "
        "(records with an abstract)" in text
    )
    # design-v2 was trained before the records-OWNER-NAME folders and the 2016 slice joined the
    # shared records: on fewer records than the baseline now sees, none of them in the report split
    model = D.load_model()
    assert report.model_training_records == model.data["training"]["records"] <= report.n_train
    assert f"design model {model.version} trained on {report.model_training_records} MEDLINE records outside" in text


# -- the design model's training (harvest.train_tagger) ---------------------------------------------------


def test_training_drops_the_report_split_and_its_file_reproduces_its_scores(tmp_path, by_pmid_latest):
    """Training on a slice of the shared records (the full run, `python -m harvest.train_tagger`,
    takes minutes): report-split records are dropped before anything is computed; the file it
    writes loads, and the pure-Python inference over it gives the scores scikit-learn gave."""
    from harvest import design_model as D
    from harvest import tags as T
    from harvest import train_tagger as TT

    records = [r for r in load_shared_records() if r["pmid"] % 29 == 0 and r["pmid"] < 600000]
    kept = TT.training_records(records)
    assert kept and all(r["pmid"] % 5 and r["citation_status"] == "MEDLINE" for r in kept)
    assert len(kept) < sum(1 for r in records if r["citation_status"] == "MEDLINE")
    content = TT.train(records, log=lambda m: None)
    assert content["training"]["records"] == len(kept)
    TT.write_model(content, tmp_path / "model.json")
    model = D.load_model(str(tmp_path / "model.json"))
    assert model.method == f"model:{TT.VERSION}" and set(model.labels) == set(D.LABEL_VALUES)
    for pmid, expected in content["checks"].items():
        totals, _ = model.scores(*T.design_features(by_pmid_latest[int(pmid)]))
        for label, score in zip(model.labels, totals):
            assert score == pytest.approx(expected[label], abs=2e-3), (pmid, label)
    for label, cv in content["cv"].items():
        assert 0 <= cv["precision"] <= 1 and 0 <= cv["f1"] <= 1 and cv["positives"] >= 1, label


def test_best_precision_at_recall_scans_every_threshold():
    from harvest.train_tagger import best_precision_at_recall

    scores, gold = [3.0, 2.0, 1.0, 0.0, -1.0], [True, False, True, True, False]
    # recall >= 1/3 first at 3.0 (P 1.0); >= 2/3 at 1.0 (P 0.67); 1.0 at 0.0 (P 0.75)
    assert best_precision_at_recall(scores, gold, 0.3) == 1.0
    assert best_precision_at_recall(scores, gold, 0.6) == 0.75
    assert best_precision_at_recall(scores, gold, 1.0) == 0.75
    assert best_precision_at_recall([1.0, 1.0], [True, False], 0.5) == 0.5  # a tie is one threshold


def test_choose_threshold_takes_the_best_f1():
    threshold, cv = __import__("harvest.train_tagger", fromlist=["x"]).choose_threshold(
        [3.0, 2.0, 1.0, 0.0, -1.0], [True, True, False, True, False]
    )
    # cutting below 2.0 gives P 1.0 R 0.67 (F1 0.8); below 0.0 gives P 0.75 R 1.0 (F1 0.857)
    assert -1.0 < threshold < 0.0
    assert (cv["precision"], cv["recall"], cv["f1"]) == (0.75, 1.0, 0.8571)


def test_module_command_prints_the_report_and_exits_by_the_targets():
    """``python -m harvest.evaluate FILES`` prints the same table; exit 1 while a target is not met
    or cannot be judged."""
    import subprocess
    import sys

    from tests.conftest import DATA, ROOT

    files = sorted(str(p) for p in (DATA / "pubmed" / "records").glob("*.xml"))
    assert len(files) > 200
    done = subprocess.run(
        [sys.executable, "-m", "harvest.evaluate", *files], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.stdout.startswith("Evidence tags (")
    assert "report split: PMID % 5 == 0" in done.stdout and "ceilings:" in done.stdout
    unmet = "[NOT MET]" in done.stdout or "[n/a]" in done.stdout
    assert done.returncode == (1 if unmet else 0), done.stderr


def test_model_confidence_is_calibrated_on_the_report_split(by_pmid_latest):
    """A design-model tag's confidence is a probability a reader can take at its word: on the
    held-out split, the mean confidence of each label's text-only tags matches how often the
    indexers agreed, and confident tags are right more often than hesitant ones."""
    from harvest import tags as T

    label_of = {value: label for label, value in D.LABEL_VALUES.items()}
    model_method = D.load_model().method
    seen: dict[str, list[tuple[float, bool]]] = {label: [] for label in D.LABEL_VALUES}
    for r in by_pmid_latest.values():
        if not E.report_split(r["pmid"]) or r["citation_status"] != "MEDLINE":
            continue
        for tag in T.tag_article(r, use_indexing=False):
            if tag["method"] == model_method:
                label = label_of[tag["value"]]
                seen[label].append((tag["confidence"], E.GOLD_LABELS[label].gold(r)))
    for label in ("animal_study", "case_report", "review"):
        pairs = seen[label]
        assert len(pairs) >= 200, label
        mean_confidence = sum(c for c, _ in pairs) / len(pairs)
        precision = sum(g for _, g in pairs) / len(pairs)
        assert abs(mean_confidence - precision) <= 0.05, (label, mean_confidence, precision)
        confident = [g for c, g in pairs if c >= 0.8]
        hesitant = [g for c, g in pairs if c < 0.5]
        assert confident and hesitant, label
        assert sum(confident) / len(confident) > sum(hesitant) / len(hesitant) + 0.2, label


def test_a_target_without_positives_in_the_split_reads_n_a_not_a_verdict():
    """A small catalog whose report split holds no RCT or case report cannot tell whether the
    tagger meets those targets: the report says so instead of printing P=0 as a failure."""
    from tests.conftest import DATA

    records = list(E.iter_records_from_files(sorted((DATA / "pubmed" / "records").glob("*.xml"))))
    report = E.evaluate(records, baseline=False)
    assert report.n_gold > 0
    rct = report.scores["all"]["rct"]["tagger"]
    cr = report.scores["with_abstract"]["case_report"]["tagger"]
    assert rct.positives == 0 and cr.positives == 0  # the premise: these 215 records lack them
    text = E.format_report(report)
    for t in report.targets[:3]:
        assert not t.judged and not t.holds
        assert f"  [n/a] {t.name}: no positives in the split" in text
    assert "[NOT MET] RCT" not in text and "[NOT MET] case reports" not in text
    assert not report.targets_met  # --check still fails: nothing was shown to hold


def test_a_file_that_is_not_pubmed_xml_is_one_line_naming_it(tmp_path):
    """A real XML file of another kind (an ELink answer stored beside the records) among the
    FILES: one line naming it, exit 1, no traceback."""
    from click.testing import CliRunner

    from harvest.cli import cli
    from tests.conftest import DATA

    elink = DATA / "pubmed" / "records-metapub-repo-extra" / "medgen_elink_pubmed_0_entries.xml"
    records = sorted(str(p) for p in (DATA / "pubmed" / "records").glob("*.xml"))[:3]
    result = CliRunner().invoke(cli, ["evaluate", "--no-baseline", *records, str(elink)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"harvest: error: not a PubMed article document: {elink} has root element <eLinkResult> "
        "(expected one of MedlineCitation, MedlineCitationSet, PubmedArticle, PubmedArticleSet, "
        "PubmedBookArticle, PubmedBookArticleSet)"
    ]


def test_without_scikit_learn_evaluate_reports_the_tagger_and_train_tagger_says_what_to_install(tmp_path, monkeypatch):
    """scikit-learn is the `evaluate` extra: without it `evaluate` prints the tagger's figures and
    one line saying why the baseline is missing, and `train-tagger` stops in one line, before
    reading anything, writing no model."""
    from click.testing import CliRunner

    from harvest.cli import cli
    from tests.conftest import DATA

    # As if scikit-learn were not installed: its modules that earlier tests loaded included.
    for name in ["sklearn", *(m for m in sys.modules if m.startswith("sklearn."))]:
        monkeypatch.setitem(sys.modules, name, None)
    records = sorted(str(p) for p in (DATA / "pubmed" / "records").glob("*.xml"))
    result = CliRunner().invoke(cli, ["evaluate", *records])
    assert result.stdout.startswith("Evidence tags (") and "report split: PMID % 5 == 0" in result.stdout
    assert f"baseline not run: {E.MISSING_SKLEARN}" in result.stdout.splitlines()
    model = tmp_path / "model.json"
    result = CliRunner().invoke(cli, ["train-tagger", *records, "-o", str(model)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "harvest: error: train-tagger: scikit-learn is not installed: pip install 'ketamine-catalog[evaluate]'"
    ]
    assert not model.exists()
