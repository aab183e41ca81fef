"""Train the design model (`harvest.design_model`) and write `harvest/design_model.json`.

``python -m harvest.train_tagger [FILE...] [-o PATH]`` (defaults: the shared PubMed files the
committed model was trained on, `training_corpus_paths`, and the committed model file).
Deterministic: the same records give the same file, byte for byte, so the default run rewrites
the committed file unchanged.

* **Training records**: citation status MEDLINE (NLM has indexed them), highest version of each
  PMID, **outside the report split** (`evaluate.report_split`: PMID % 5 != 0). The report split is
  never read here.
* **Gold**: the labels of `harvest.evaluate.GOLD_LABELS` (rct, case_report, review,
  animal_study), i.e. the indexers' publication types and Animals/Humans check tags.
* **Input**: `harvest.tags.design_features` (title and abstract only; see `design_model`).
  Vocabulary: every fixed feature, and word / word-pair / title 4-gram features seen in at least
  `MIN_DF` training records.
* **Model, per label**: L2 logistic regression (liblinear, C=`C`, random_state 0) on the whole
  vocabulary; the `KEEP` features with the largest absolute weights are kept and the model is
  fitted again on them alone (so the weight file stays small and inference cheap).
* **Second model, per label** (`design_model.terms` / `design_model.tfidf_weights`): idf from the
  training records' document frequencies (smoothed, terms in at least `MIN_DF` records); L2
  logistic regression (liblinear, C=`C`) on every term, keep the `KEEP_TERMS` largest
  |weights|, refit on those (re-normalised over them). Its out-of-fold scores are added to the
  first model's with a weight from `BLENDS` (times the ratio of the two models' out-of-fold
  standard deviations), the one whose sum has the best out-of-fold F1 (0: the label does
  without it).
* **Threshold, per label**: chosen on out-of-fold scores of the training records (5 folds fixed
  by PMID: ``(pmid // 5) % 5``; the feature selection and both fits are redone inside each fold),
  after the vetoes of `design_model.VETOES`: the threshold with the highest F1, placed halfway
  to the next lower out-of-fold score. The out-of-fold precision, recall and F1 are written
  into the file (``cv``).
* **Calibration, per label**: a one-variable logistic regression of the gold label on the
  out-of-fold (blended) score, so a tag's confidence is an estimated probability, not the raw
  score pushed through the logistic function (the blended score is a sum of two models' logits).
* **Ceilings**: for the labels the issue sets a precision target on (`CEILINGS`), the best
  precision any threshold reaches out of fold at the target's recall, written into ``cv``:
  what the report split can be expected to show at best (``harvest evaluate`` prints it).
* **Checks**: the file keeps the scores scikit-learn gives a few training records; the tests
  recompute them with the pure-Python inference, so a change of the rules or of the feature
  code that would make the committed weights stale fails the tests.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import design_model
from . import tags as tagging
from .evaluate import GOLD_LABELS, _latest_versions, default_corpus_paths, report_split

VERSION = "design-v2"
C = 4.0
KEEP = 2500
KEEP_TERMS = 3000
BLENDS = (0.0, 0.5, 1.0, 2.0)
MIN_DF = 2
N_FOLDS = 5
N_CHECKS = 40
# label -> (recall, records): the precision targets are set at these recalls
CEILINGS = {"rct": (0.60, "all"), "case_report": (0.75, "with_abstract")}
WEIGHT_DIGITS = 4


def training_corpus_paths(shared_dir: Path | str | None = None) -> list[Path]:
    """The files the committed model was trained on: the 1977-79 baseline slice, the 2021 update
    slice and records/ (16,380 MEDLINE records outside the report split). Not every file
    `evaluate` reads: retrained on those too (the 2016 slice and the records-OWNER-NAME folders,
    17,119 records), the model scored worse on the report split (README, *Tried and not
    shipped*), so a retrain by default reproduces the shipped model; name the files to train on
    more."""
    wanted = {"pubmed20n0014-part1.xml.gz", "pubmed21n1298-part1.xml.gz"}
    return [p for p in default_corpus_paths(shared_dir) if p.name in wanted or p.parent.name == "records"]


def fold_of(pmid: int) -> int:
    return (int(pmid) // 5) % N_FOLDS


def training_records(records: Iterable[Mapping]) -> list[Mapping]:
    """MEDLINE records (highest version) outside the report split, in PMID order."""
    return [
        r for r in _latest_versions(records) if r.get("citation_status") == "MEDLINE" and not report_split(r["pmid"])
    ]


def _matrix(feats: Sequence[tuple[set[str], set[str], Mapping[str, int]]]):
    from collections import Counter

    import scipy.sparse as sp

    df: Counter = Counter()
    fixed_names: set[str] = set()
    for fixed, words, _ in feats:
        df.update(words)
        fixed_names |= fixed
    names = sorted(fixed_names) + sorted(w for w, n in df.items() if n >= MIN_DF)
    index = {name: i for i, name in enumerate(names)}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for i, (fixed, words, _) in enumerate(feats):
        scale = 1.0 / math.sqrt(len(words)) if words else 0.0
        for f in fixed:
            rows.append(i)
            cols.append(index[f])
            vals.append(1.0)
        for w in words:
            j = index.get(w)
            if j is not None:
                rows.append(i)
                cols.append(j)
                vals.append(scale)
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(feats), len(names))), names


def _fit_selected(x, y):
    """Fit on everything, keep the KEEP largest |weights|, fit again on those: (model, columns)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    def fit(m):
        return LogisticRegression(C=C, solver="liblinear", max_iter=5000, random_state=0).fit(m, y)

    first = fit(x)
    order = np.argsort(-np.abs(first.coef_[0]), kind="stable")[:KEEP]
    columns = np.sort(order)
    return fit(x[:, columns]), columns


def term_idf(feats) -> dict[str, float]:
    """Smoothed idf, ln((1 + n) / (1 + df)) + 1, of the terms in at least MIN_DF records."""
    from collections import Counter

    df: Counter = Counter()
    for _, _, counts in feats:
        df.update(counts.keys())
    n = len(feats)
    return {t: math.log((1 + n) / (1 + d)) + 1.0 for t, d in sorted(df.items()) if d >= MIN_DF}


def _term_matrix(feats, idf: Mapping[str, float]):
    """Unnormalised sublinear-tf x idf rows over every term with an idf: (matrix, term names)."""
    import scipy.sparse as sp

    names = list(idf)
    index = {t: i for i, t in enumerate(names)}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for i, (_, _, counts) in enumerate(feats):
        for t, c in counts.items():
            j = index.get(t)
            if j is not None:
                rows.append(i)
                cols.append(j)
                vals.append((1.0 + math.log(c)) * idf[t])
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(feats), len(names))), names


def _fit_terms(raw, y):
    """The second model: fit on every term (L2-normalised rows), keep the KEEP_TERMS largest
    |weights|, refit on those with rows re-normalised over them: (model, columns)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import normalize

    def fit(m):
        return LogisticRegression(C=C, solver="liblinear", max_iter=5000, random_state=0).fit(m, y)

    first = fit(normalize(raw))
    columns = np.sort(np.argsort(-np.abs(first.coef_[0]), kind="stable")[:KEEP_TERMS])
    return fit(normalize(raw[:, columns])), columns


def _term_scores(model, columns, raw):
    from sklearn.preprocessing import normalize

    return model.decision_function(normalize(raw[:, columns]))


def best_precision_at_recall(scores, gold, recall: float) -> float:
    """The highest precision of any threshold on these scores whose recall is at least `recall`
    (0.0 when none reaches it)."""
    pairs = sorted(zip(scores, gold), key=lambda p: -p[0])
    positives = sum(1 for _, g in pairs if g)
    best = 0.0
    tp = 0
    for i, (s, g) in enumerate(pairs):
        tp += g
        if i + 1 < len(pairs) and pairs[i + 1][0] == s:
            continue  # ties are decided together
        if positives and tp / positives >= recall and math.isfinite(s):
            best = max(best, tp / (i + 1))
    return round(best, 4)


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def choose_threshold(scores, gold) -> tuple[float, dict]:
    """The threshold with the best F1 on these (out-of-fold) scores, halfway to the next lower score."""
    pairs = sorted(zip(scores, gold), key=lambda p: -p[0])
    positives = sum(1 for _, g in pairs if g)
    best = (-1.0, math.inf, 0, 0)
    tp = fp = 0
    for i, (s, g) in enumerate(pairs):
        tp += g
        fp += not g
        if i + 1 < len(pairs) and pairs[i + 1][0] == s:
            continue  # ties are decided together
        f1 = _f1(tp, fp, positives - tp)
        if f1 > best[0]:
            lower = pairs[i + 1][0] if i + 1 < len(pairs) else s - 1.0
            best = (f1, (s + max(lower, -30.0)) / 2 if math.isfinite(lower) else s - 1.0, tp, fp)
    f1, threshold, tp, fp = best
    cv = {
        "positives": positives,
        "predicted": tp + fp,
        "precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
        "recall": round(tp / positives, 4) if positives else 0.0,
        "f1": round(f1, 4),
    }
    return threshold, cv


def train(records: Iterable[Mapping], *, log=print) -> dict:
    """The model file's content, from parsed article records (the report split is dropped here)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    train_records = training_records(records)
    feats = [tagging.design_features(r) for r in train_records]
    x, names = _matrix(feats)
    idf = term_idf(feats)
    raw, term_names = _term_matrix(feats, idf)
    log(
        f"{len(train_records)} training records, {len(names)} features, {len(term_names)} terms "
        f"({time.perf_counter() - started:.0f} s)"
    )
    pmids = np.array([int(r["pmid"]) for r in train_records])
    folds = np.array([fold_of(p) for p in pmids])
    has_abstract = np.array([bool((r.get("abstract") or "").strip()) for r in train_records])
    out: dict = {
        "version": VERSION,
        "rules_version": tagging.RULES_VERSION,
        "labels": list(design_model.LABEL_VALUES),
        "intercepts": {},
        "thresholds": {},
        "weights": {},
        "blend": {},
        "term_intercepts": {},
        "term_weights": {},
        "idf": {},
        "calibration": {},
        "cv": {},
        "training": {
            "records": len(train_records),
            "features": len(names),
            "terms": len(term_names),
            "C": C,
            "keep": KEEP,
            "keep_terms": KEEP_TERMS,
            "min_df": MIN_DF,
            "folds": N_FOLDS,
            "split": "citation status MEDLINE, PMID % 5 != 0 (the report split is never used)",
        },
    }
    check_rows = sorted(range(len(train_records)), key=lambda i: (i * 7919) % len(train_records))[:N_CHECKS]
    checks: dict[int, dict] = {int(pmids[i]): {} for i in check_rows}
    used_terms: set[str] = set()
    for label in design_model.LABEL_VALUES:
        y = np.array([GOLD_LABELS[label].gold(r) for r in train_records])
        if y.all() or not y.any():  # nothing to learn: the label is never (or always) predicted
            raise ValueError(f"train_tagger: label {label} has {int(y.sum())} positives in {len(y)} records")
        vetoed = np.array([bool(design_model.VETOES.get(label, frozenset()) & f[0]) for f in feats])
        oof = np.zeros(len(y))
        oof_terms = np.zeros(len(y))
        for k in range(N_FOLDS):
            inside = folds != k
            model, columns = _fit_selected(x[inside], y[inside])
            oof[~inside] = model.decision_function(x[~inside][:, columns])
            term_model, term_columns = _fit_terms(raw[inside], y[inside])
            oof_terms[~inside] = _term_scores(term_model, term_columns, raw[~inside])
        ratio = float(np.std(oof) / np.std(oof_terms))
        best: tuple[float, float, dict, Any] | None = None  # (blend, threshold, cv, blended scores)
        for b in BLENDS:
            blended = oof + b * ratio * oof_terms
            blended[vetoed] = -math.inf
            threshold, cv = choose_threshold(blended.tolist(), y.tolist())
            cv["blend"] = b
            if best is None or cv["f1"] > best[2]["f1"]:
                best = (b * ratio, threshold, cv, blended)
        assert best is not None  # BLENDS is not empty
        blend, threshold, cv, blended = best
        usable = np.isfinite(blended)
        calibration = LogisticRegression(C=1e4, solver="lbfgs", max_iter=1000).fit(
            blended[usable].reshape(-1, 1), y[usable]
        )
        out["calibration"][label] = [
            round(float(calibration.coef_[0][0]), WEIGHT_DIGITS),
            round(float(calibration.intercept_[0]), WEIGHT_DIGITS),
        ]
        if label in CEILINGS:
            recall, subset = CEILINGS[label]
            keep = has_abstract if subset == "with_abstract" else np.ones(len(y), dtype=bool)
            cv["ceiling"] = {
                "recall": recall,
                "records": subset,
                "best_precision": best_precision_at_recall(blended[keep].tolist(), y[keep].tolist(), recall),
            }
        model, columns = _fit_selected(x, y)
        weights = {names[j]: round(float(w), WEIGHT_DIGITS) for j, w in zip(columns, model.coef_[0])}
        out["weights"][label] = {k: v for k, v in sorted(weights.items()) if v != 0.0}
        out["intercepts"][label] = round(float(model.intercept_[0]), WEIGHT_DIGITS)
        out["thresholds"][label] = round(threshold, WEIGHT_DIGITS)
        out["cv"][label] = cv
        full = model.decision_function(x[check_rows][:, columns])
        if blend:
            blend = round(blend, WEIGHT_DIGITS)
            term_model, term_columns = _fit_terms(raw, y)
            term_weights = {
                term_names[j]: round(float(w), WEIGHT_DIGITS) for j, w in zip(term_columns, term_model.coef_[0])
            }
            out["term_weights"][label] = {k: v for k, v in sorted(term_weights.items()) if v != 0.0}
            used_terms |= set(out["term_weights"][label])
            out["term_intercepts"][label] = round(float(term_model.intercept_[0]), WEIGHT_DIGITS)
            full = full + blend * _term_scores(term_model, term_columns, raw[check_rows])
        out["blend"][label] = blend
        for i, s in zip(check_rows, full):
            checks[int(pmids[i])][label] = round(float(s), 6)
        log(
            f"{label}: {int(y.sum())} positives; blend {cv['blend']}; out-of-fold at threshold {threshold:.3f}: "
            f"P {cv['precision']:.3f} R {cv['recall']:.3f} F1 {cv['f1']:.3f} ({time.perf_counter() - started:.0f} s)"
        )
    out["idf"] = {t: round(idf[t], WEIGHT_DIGITS) for t in sorted(used_terms)}
    out["checks"] = {str(p): v for p, v in sorted(checks.items())}
    return out


def write_model(model: Mapping, path: Path | str) -> None:
    text = json.dumps(model, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m harvest.train_tagger`` is an alias of ``python -m harvest train-tagger``."""
    from .cli import cli

    cli(["train-tagger", *(sys.argv[1:] if argv is None else argv)], prog_name="python -m harvest")


if __name__ == "__main__":
    main()
