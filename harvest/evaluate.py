"""Measure the text-only tagger against PubMed's own expert indexing.

`evaluate(records)` takes parsed article records (`harvest.pubmed_xml.parse_pubmed_xml`):

* **Gold standard**: records with citation status ``MEDLINE`` (NLM's indexers have assigned
  publication types and MeSH). In-Process, In-Data-Review, Publisher and PubMed-not-MEDLINE
  records are left out: they are not indexed (yet). A PMID seen in several versions counts once,
  in its highest version.
* **The split is fixed in code**: `report_split(pmid)` is ``pmid % 5 == 0``. Only report-split
  records are scored; the rules were tuned, and the tagger's design model
  (`harvest.design_model`, written by `harvest.train_tagger`) and the baseline are trained, on
  the other records only. Nothing here takes a seed or a fraction, so the split cannot drift.
* **Tagger**: `harvest.tags.tag_article(record, use_indexing=False)`, which ignores MeSH,
  publication types, chemicals and NLM keywords and reads the title and abstract alone (its
  rules, and for rct, case reports, reviews and animal studies its design model). A label
  is predicted when the tagger emits one of the label's design values (`GOLD_LABELS`).
* **Baseline**: TF-IDF (words and word pairs, sublinear tf, min_df 2) + logistic regression
  (C=4, balanced class weights, lbfgs, random_state 0), one classifier per label, trained on the
  MEDLINE records outside the report split, scored on the report split. Its settings were chosen
  once on an internal split of the training records, never on the report split.
* **Figures**: per label, positives, precision and recall with 95% Wilson score intervals, and F1,
  over all gold records, over those with an abstract, over the modern ones (publication year
  2000 or later: what a living review screens while it awaits indexing) and over the 1970s ones
  (most of the shared gold records, indexed by the conventions of their time); then the targets
  of the issues and whether each holds.

`format_report(report)` renders the table. The command line (``python -m harvest evaluate``)
calls `run_evaluation` / `format_report`; ``python -m harvest.evaluate [FILES...]`` works too.
"""

from __future__ import annotations

import gzip
import math
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from . import design_model
from . import tags as tagging

REPORT_MODULUS = 5
# scikit-learn is an extra (`evaluate`): the baseline and `train-tagger` need it, nothing else does.
MISSING_SKLEARN = "scikit-learn is not installed: pip install 'ketamine-catalog[evaluate]'"
Z_95 = 1.959963984540054
MIN_POSITIVES_FOR_F1_TARGET = 20
TARGET_ISSUE_21 = 0.85  # modern records: case-report precision, narrative-review recall


def report_split(pmid) -> bool:
    """The held-out report split: PMID modulo 5 == 0. Fixed; never used for tuning."""
    return int(pmid) % REPORT_MODULUS == 0


def _pubtypes(record: Mapping) -> set[str]:
    return {p.get("name") for p in record.get("publication_types") or []}


def _mesh(record: Mapping) -> set[str]:
    return {m.get("descriptor_name") for m in record.get("mesh") or []}


@dataclass(frozen=True)
class GoldLabel:
    name: str
    definition: str  # how the indexers' publication types / MeSH define it
    gold: Callable[[Mapping], bool]
    design_values: frozenset[str]  # tagger design values that predict it


GOLD_LABELS: dict[str, GoldLabel] = {
    g.name: g
    for g in (
        GoldLabel(
            "rct",
            'publication type "Randomized Controlled Trial"',
            lambda r: "Randomized Controlled Trial" in _pubtypes(r),
            frozenset({"rct", "crossover_rct"}),
        ),
        GoldLabel(
            "case_report",
            'publication type "Case Reports"',
            lambda r: "Case Reports" in _pubtypes(r),
            frozenset({"case_report_series"}),
        ),
        GoldLabel(
            "review",
            'publication type "Review", without "Systematic Review" or "Meta-Analysis" (narrative)',
            lambda r: "Review" in _pubtypes(r) and not ({"Systematic Review", "Meta-Analysis"} & _pubtypes(r)),
            frozenset({"narrative_review"}),
        ),
        GoldLabel(
            "systematic_review",
            'publication type "Systematic Review"',
            lambda r: "Systematic Review" in _pubtypes(r),
            frozenset({"systematic_review"}),
        ),
        GoldLabel(
            "meta_analysis",
            'publication type "Meta-Analysis"',
            lambda r: "Meta-Analysis" in _pubtypes(r),
            frozenset({"meta_analysis"}),
        ),
        GoldLabel(
            "protocol",
            'publication type "Clinical Trial Protocol"',
            lambda r: "Clinical Trial Protocol" in _pubtypes(r),
            frozenset({"trial_protocol"}),
        ),
        GoldLabel(
            "animal_study",
            'MeSH check tag "Animals" without "Humans"',
            lambda r: "Animals" in _mesh(r) and "Humans" not in _mesh(r),
            frozenset({"preclinical_animal"}),
        ),
    )
}


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion successes/n; (0.0, 1.0) when n is 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Score:
    tp: int
    fp: int
    fn: int

    @property
    def positives(self) -> int:
        return self.tp + self.fn

    @property
    def predicted(self) -> int:
        return self.tp + self.fp

    @property
    def precision(self) -> float:
        return self.tp / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.positives if self.positives else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def precision_ci(self) -> tuple[float, float]:
        return wilson_interval(self.tp, self.predicted)

    @property
    def recall_ci(self) -> tuple[float, float]:
        return wilson_interval(self.tp, self.positives)


def score(gold: Sequence[bool], predicted: Sequence[bool]) -> Score:
    tp = sum(1 for g, p in zip(gold, predicted) if g and p)
    fp = sum(1 for g, p in zip(gold, predicted) if p and not g)
    fn = sum(1 for g, p in zip(gold, predicted) if g and not p)
    return Score(tp, fp, fn)


@dataclass(frozen=True)
class Target:
    name: str
    holds: bool
    detail: str
    # False when the split has no positives of the label: the target cannot be judged either way
    # (it does not hold, so `--check` still fails, but the report says "n/a", not "NOT MET")
    judged: bool = True

    @property
    def status(self) -> str:
        return "ok" if self.holds else ("NOT MET" if self.judged else "n/a")


class LabelScores(TypedDict):
    """One label's scores: the tagger's, the baseline's (None when it did not run) and the
    primary design's (articles.study_design as the prediction)."""

    tagger: Score
    baseline: Score | None
    primary: Score


@dataclass
class EvaluationReport:
    rules_version: str
    n_records: int  # distinct records given
    n_gold: int  # MEDLINE records in the report split
    n_gold_with_abstract: int
    n_train: int  # MEDLINE records outside the split (baseline training)
    scores: dict[str, dict[str, LabelScores]]  # scores[subset][label]
    targets: list[Target]
    baseline_error: str | None = None
    model_version: str = ""  # the tagger's design model (harvest.design_model)
    model_training_records: int = 0
    # label -> the model file's out-of-fold ceiling at the target's recall (train_tagger.CEILINGS)
    ceilings: dict[str, dict] = field(default_factory=dict)
    seconds_tagging: float = 0.0
    seconds_baseline: float = 0.0
    notes: list[str] = field(default_factory=list)
    subset_sizes: dict[str, int] = field(default_factory=dict)  # gold records per subset

    @property
    def targets_met(self) -> bool:
        return all(t.holds for t in self.targets)


SUBSETS = ("all", "with_abstract", "modern", "1970s")
# Eras by publication year (`pub_year`, from the record's own PubDate, not from indexing): modern
# records are the ones a living review screens (2000 or later); the 1970s records are most of the
# shared gold records and were indexed by conventions of their time. Records of other years (few)
# count in "all" only.
MODERN_FROM_YEAR = 2000
ERAS: dict[str, Callable[[int | None], bool]] = {
    "modern": lambda year: year is not None and year >= MODERN_FROM_YEAR,
    "1970s": lambda year: year is not None and 1970 <= year <= 1979,
}
SUBSET_TITLES = {
    "all": "all gold records",
    "with_abstract": "gold records with an abstract",
    "modern": f"modern gold records (published {MODERN_FROM_YEAR} or later)",
    "1970s": "1970s gold records (published 1970-1979)",
}


def era_of(record: Mapping) -> str | None:
    """ "modern", "1970s" or None, by the record's publication year."""
    year = record.get("pub_year")
    year = int(year) if year else None
    for name, test in ERAS.items():
        if test(year):
            return name
    return None


def _latest_versions(records: Iterable[Mapping]) -> list[Mapping]:
    best: dict[int, Mapping] = {}
    for r in records:
        if r.get("type", "article") != "article":
            continue
        pmid = int(r["pmid"])
        if pmid not in best or (r.get("pmid_version") or 1) > (best[pmid].get("pmid_version") or 1):
            best[pmid] = r
    return [best[k] for k in sorted(best)]


def _text(record: Mapping) -> str:
    return (record.get("title") or "") + " " + (record.get("abstract") or "")


def _baseline_predictions(train: list[Mapping], test: list[Mapping]) -> dict[str, list[bool]]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = vectorizer.fit_transform([_text(r) for r in train])
    x_test = vectorizer.transform([_text(r) for r in test])
    out: dict[str, list[bool]] = {}
    for name, label in GOLD_LABELS.items():
        y = [label.gold(r) for r in train]
        if len(set(y)) < 2:
            out[name] = [False] * len(test)
            continue
        model = LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000, random_state=0)
        model.fit(x_train, y)
        out[name] = [bool(v) for v in model.predict(x_test)]
    return out


def evaluate(records: Iterable[Mapping], *, baseline: bool = True) -> EvaluationReport:
    """Score the text-only tagger (and the TF-IDF baseline) on the report split; see the module doc."""
    records = _latest_versions(records)
    gold_records = [r for r in records if r.get("citation_status") == "MEDLINE"]
    test = [r for r in gold_records if report_split(r["pmid"])]
    train = [r for r in gold_records if not report_split(r["pmid"])]

    started = time.perf_counter()
    tagged = [tagging.tag_article(r, use_indexing=False) for r in test]
    seconds_tagging = time.perf_counter() - started
    designs = [{t["value"] for t in ts if t["facet"] == "design"} for ts in tagged]
    primaries = [tagging.primary_design(ts) for ts in tagged]

    baseline_preds: dict[str, list[bool]] | None = None
    baseline_error = None
    started = time.perf_counter()
    if baseline:
        try:
            baseline_preds = _baseline_predictions(train, test) if train and test else None
        except ImportError:  # scikit-learn missing: report the tagger alone, say why
            baseline_error = f"baseline not run: {MISSING_SKLEARN}"
    seconds_baseline = time.perf_counter() - started

    has_abstract = [bool((r.get("abstract") or "").strip()) for r in test]
    eras = [era_of(r) for r in test]
    keeps = {
        "all": [True] * len(test),
        "with_abstract": has_abstract,
        **{era: [e == era for e in eras] for era in ERAS},
    }
    scores: dict[str, dict[str, LabelScores]] = {}
    for subset in SUBSETS:
        keep = keeps[subset]
        scores[subset] = {}
        for name, label in GOLD_LABELS.items():
            gold = [label.gold(r) for r, k in zip(test, keep) if k]
            pred = [bool(d & label.design_values) for d, k in zip(designs, keep) if k]
            prim = [p in label.design_values for p, k in zip(primaries, keep) if k]
            base = None
            if baseline_preds is not None:
                base = score(gold, [p for p, k in zip(baseline_preds[name], keep) if k])
            scores[subset][name] = {"tagger": score(gold, pred), "baseline": base, "primary": score(gold, prim)}

    report = EvaluationReport(
        rules_version=tagging.RULES_VERSION,
        n_records=len(records),
        n_gold=len(test),
        n_gold_with_abstract=sum(has_abstract),
        n_train=len(train),
        scores=scores,
        targets=[],
        baseline_error=baseline_error,
        seconds_tagging=seconds_tagging,
        seconds_baseline=seconds_baseline,
        subset_sizes={subset: sum(keep) for subset, keep in keeps.items()},
    )
    model = design_model.load_model()
    report.model_version, report.model_training_records = model.version, model.data["training"]["records"]
    report.ceilings = {label: cv["ceiling"] for label, cv in model.data["cv"].items() if "ceiling" in cv}
    report.targets = _targets(report)
    return report


def _targets(report: EvaluationReport) -> list[Target]:
    out = []
    for name, s, precision, recall in (
        (
            "RCT precision >= 0.80 with recall >= 0.60 (all gold records)",
            report.scores["all"]["rct"]["tagger"],
            0.80,
            0.60,
        ),
        (
            "RCT precision >= 0.80 with recall >= 0.60 (gold records with an abstract)",
            report.scores["with_abstract"]["rct"]["tagger"],
            0.80,
            0.60,
        ),
        (
            "case reports with an abstract: precision >= 0.90 with recall >= 0.75",
            report.scores["with_abstract"]["case_report"]["tagger"],
            0.90,
            0.75,
        ),
    ):
        if not s.positives:
            out.append(
                Target(
                    name, False, f"no positives in the split ({s.predicted} predicted): cannot be judged", judged=False
                )
            )
            continue
        out.append(
            Target(
                name,
                s.precision >= precision and s.recall >= recall,
                f"P={s.precision:.3f} R={s.recall:.3f} (positives {s.positives})",
            )
        )
    for name, s, attr in (
        (
            "case reports, modern records: precision >= 0.85 (issue 21)",
            report.scores["modern"]["case_report"]["tagger"],
            "precision",
        ),
        (
            "narrative reviews, modern records: recall >= 0.85 (issue 21)",
            report.scores["modern"]["review"]["tagger"],
            "recall",
        ),
    ):
        if not s.positives:
            out.append(
                Target(
                    name, False, f"no positives in the split ({s.predicted} predicted): cannot be judged", judged=False
                )
            )
            continue
        value = getattr(s, attr)
        lo, hi = s.precision_ci if attr == "precision" else s.recall_ci
        out.append(
            Target(
                name,
                value >= TARGET_ISSUE_21,
                f"P={s.precision:.3f} R={s.recall:.3f} ({attr} 95% CI [{lo:.2f}, {hi:.2f}], positives {s.positives})",
            )
        )
    for name in GOLD_LABELS:
        row = report.scores["all"][name]
        tagger, base = row["tagger"], row["baseline"]
        if tagger.positives < MIN_POSITIVES_FOR_F1_TARGET:
            continue
        if base is None:
            out.append(
                Target(f"{name}: tagger F1 > baseline F1 ({tagger.positives} positives)", False, "baseline not run")
            )
            continue
        out.append(
            Target(
                f"{name}: tagger F1 > baseline F1 ({tagger.positives} positives)",
                tagger.f1 > base.f1,
                f"tagger {tagger.f1:.3f} vs baseline {base.f1:.3f}",
            )
        )
    return out


def _cell(s: Score | None) -> str:
    if s is None:
        return f"{'-':>47}"
    plo, phi = s.precision_ci
    rlo, rhi = s.recall_ci
    return (
        f"{s.precision:5.2f} [{plo:4.2f},{phi:4.2f}] {s.recall:5.2f} [{rlo:4.2f},{rhi:4.2f}] {s.f1:5.2f}"
        f" {s.predicted:5d}"
    )


def format_report(report: EvaluationReport) -> str:
    """A readable table: per label, tagger and baseline side by side, then the targets."""
    lines = [
        f"Evidence tags ({report.rules_version}) scored against PubMed's indexing",
        f"report split: PMID % {REPORT_MODULUS} == 0, citation status MEDLINE: {report.n_gold} records "
        f"({report.n_gold_with_abstract} with an abstract) of {report.n_records} distinct records given",
        f"tagger: title + abstract only (use_indexing=False), rules with design model {report.model_version} trained "
        f"on {report.model_training_records} MEDLINE records outside the split",
        f"baseline: TF-IDF + logistic regression trained on {report.n_train} MEDLINE records outside the split",
        "cells: precision [95% Wilson CI]  recall [95% Wilson CI]  F1  predicted",
    ]
    if report.baseline_error:
        lines.append(report.baseline_error)
    header = f"{'label':<18} {'pos':>5} | {'tagger':^47} | {'baseline':^47}"
    for subset in SUBSETS:
        title = SUBSET_TITLES[subset]
        n = report.subset_sizes.get(subset, report.n_gold if subset == "all" else report.n_gold_with_abstract)
        lines += ["", f"{title} ({n})", header, "-" * len(header)]
        for name, row in report.scores[subset].items():
            lines.append(f"{name:<18} {row['tagger'].positives:>5} | {_cell(row['tagger'])} | {_cell(row['baseline'])}")
    lines += ["", "primary design (articles.study_design) as the prediction, all gold records:"]
    for name, row in report.scores["all"].items():
        lines.append(f"{name:<18} {row['primary'].positives:>5} | {_cell(row['primary'])}")
    lines += ["", "targets:"]
    for t in report.targets:
        lines.append(f"  [{t.status}] {t.name}: {t.detail}")
    if report.ceilings:
        lines += [
            "",
            f"ceilings: the best precision any threshold of {report.model_version} reaches out of fold on "
            "its training records at the target's recall",
        ]
        for label, c in report.ceilings.items():
            records = "records with an abstract" if c["records"] == "with_abstract" else "all records"
            lines.append(f"  {label}: precision {c['best_precision']:.2f} at recall >= {c['recall']:.2f} ({records})")
    lines.append(f"tagging {report.seconds_tagging:.1f} s, baseline {report.seconds_baseline:.1f} s")
    return "\n".join(lines)


# -- corpora ---------------------------------------------------------------------------------------


def default_corpus_paths(shared_dir: Path | str | None = None) -> list[Path]:
    """The shared PubMed records: the 2020 baseline slice (1977-79), the 2021 update slice, the
    2016 MEDLINE update slice, records/ and the records-OWNER-NAME/ folders (modern records
    gathered from other projects' fixtures); files that hold no PubMed articles (ELink and
    ESummary answers kept beside them) are left out."""
    if shared_dir is None:
        shared_dir = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    pubmed = Path(shared_dir) / "pubmed"
    paths = [
        pubmed / "pubmed20n0014-part1.xml.gz",
        pubmed / "pubmed21n1298-part1.xml.gz",
        pubmed / "medline16n0902.xml.gz",
    ]
    paths += sorted((pubmed / "records").glob("*.xml"))
    for folder in sorted(pubmed.glob("records-*")):
        paths += sorted(p for p in folder.iterdir() if p.name.endswith((".xml", ".xml.gz")))
    return [p for p in paths if p.exists() and _holds_articles(p)]


def _holds_articles(path: Path) -> bool:
    """Whether the file's first 64 KB name a PubMed article element (not an ELink/ESummary answer)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        head = handle.read(65536)
    return any(tag in head for tag in (b"<PubmedArticle", b"<MedlineCitation", b"<PubmedBookArticle"))


def iter_records_from_files(paths: Iterable[Path | str]) -> Iterator[dict]:
    """Article records from PubMed XML files (gzipped or not), via `parse_pubmed_xml`."""
    from .pubmed_xml import parse_pubmed_xml

    for path in paths:
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            for record in parse_pubmed_xml(handle, source_name=str(path)):
                if record["type"] == "article":
                    yield dict(record)


def iter_records_from_db(db_path: Path | str) -> Iterator[dict]:
    """Article records re-parsed from the catalog's stored XML (table ``article_xml``), read-only."""
    from .pubmed_xml import parse_pubmed_xml

    conn = sqlite3.connect(f"file:{Path(db_path)}?mode=ro", uri=True)
    try:
        for pmid, blob in conn.execute("select pmid, xml_zlib from article_xml order by pmid"):
            xml = zlib.decompress(blob)
            for record in parse_pubmed_xml(xml, source_name=f"article_xml:{pmid}"):
                if record["type"] == "article":
                    yield dict(record)
    finally:
        conn.close()


def run_evaluation(
    *, db: Path | str | None = None, paths: Sequence[Path | str] | None = None, baseline: bool = True
) -> EvaluationReport:
    """What ``python -m harvest evaluate [--db PATH]`` runs: the catalog's stored records when a
    database is given, else the given files, else the shared PubMed records."""
    if db is not None:
        records = iter_records_from_db(db)
    else:
        records = iter_records_from_files(paths or default_corpus_paths())
    return evaluate(records, baseline=baseline)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m harvest.evaluate [FILES...]``, an alias of ``python -m harvest evaluate --check``
    on the given PubMed XML files, else on the shared records (``../shared/data/pubmed``): exit 1
    when a target is not met or cannot be judged (no positives in the split)."""
    import sys

    from .cli import cli

    paths = [str(p) for p in (list(sys.argv[1:] if argv is None else argv) or default_corpus_paths())]
    if not paths:
        print("harvest: error: no PubMed files given and none found in ../shared/data/pubmed", file=sys.stderr)
        raise SystemExit(2)
    cli(["evaluate", "--check", *paths], prog_name="python -m harvest")


if __name__ == "__main__":
    main()
