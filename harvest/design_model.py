"""The learned part of the design tagger: four linear models over title and abstract.

`harvest.tags` decides four design values with these models instead of with its design
rules alone: ``rct``, ``case_report_series``, ``narrative_review`` and ``preclinical_animal``
(the designs that NLM's indexers express as publication types "Randomized Controlled
Trial", "Case Reports", "Review" and the check tag "Animals" without "Humans"). The rules
still run; what they found is part of each model's input, and the spans they matched are
the tag's evidence whenever they pushed the decision.

Input (`features`): from the title and abstract only, never MeSH, publication types or
other indexing --

* ``r:<rule id>``: a generic (non-topic) text rule of `harvest.tags` fired;
* ``c:<design>``: the rules' combined design verdict (`tags._combine_text`);
* ``n:animal<k>``, ``n:human<k>``, ``n:pct<k>``: log2 bins of the counts of animal words,
  human-subject words and per-cent signs;
* ``x:...``: no abstract, abstract and title length bins, a translated title (``[...]``),
  a structured abstract (labelled sections);
* ``t:``/``u:`` title words and word pairs (``u:`` when the record has no abstract),
  ``a:`` abstract words and word pairs (digits folded to ``<num>``/``<bignum>``), and
  ``k:`` character 4-grams of the title; these are scaled by 1/sqrt(their number).

A second linear model per label reads the same title and abstract another way (`terms`): the
counts of words (two characters or more) and word pairs, weighted TF-IDF (sublinear tf, the
training records' smoothed idf) and L2-normalised over the terms that model keeps. Its score is
added to the first model's with a per-label weight (``blend``; 0 turns it off). Trained on the
same records, the two views err differently, and their sum ranks records better out of fold
than either alone (the numbers are in `design_model.json` under ``cv``).

Inference is pure Python over the committed weight file `design_model.json` (sparse
logistic-regression weights, intercepts, blend weights and one decision threshold per label);
the score is the blended linear function, a tag is emitted when it reaches the label's
threshold, its confidence is the score's calibrated probability (a per-label slope and
intercept fitted on out-of-fold scores), and its evidence is the readable part of the largest
positive contributions. `harvest.train_tagger`
writes the file (scikit-learn is needed only there); see its module doc for the training
records, the feature selection and how thresholds are chosen.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

MODEL_PATH = Path(__file__).with_name("design_model.json")

# label -> the design value its tag carries (evaluate.GOLD_LABELS uses the same label names)
LABEL_VALUES: dict[str, str] = {
    "rct": "rct",
    "case_report": "case_report_series",
    "review": "narrative_review",
    "animal_study": "preclinical_animal",
}
MODELLED_VALUES = frozenset(LABEL_VALUES.values())

# Whole-record vetoes kept from the rules: an evidence synthesis, protocol or secondary analysis
# quotes trials it did not run; a systematic review or meta-analysis is not a case report.
VETOES: dict[str, frozenset[str]] = {
    "rct": frozenset({"c:systematic_review", "c:meta_analysis", "c:trial_protocol", "c:secondary_analysis"}),
    "case_report": frozenset({"c:systematic_review", "c:meta_analysis"}),
}

_TOKEN = re.compile(r"[a-z0-9]+")
_TERM = re.compile(r"\w\w+")


def _norm(token: str) -> str:
    if token.isdigit():
        return "<num>" if len(token) < 4 else "<bignum>"
    return token


def _bin(n: int, cap: int = 6) -> int:
    return min(cap, int(math.log2(n + 1)))


def terms(title: str, abstract: str) -> Counter:
    """Counts of the words (two or more word characters, lower-cased) and adjacent word pairs of
    the title followed by the abstract: the second model's input."""
    tokens = _TERM.findall(f"{title} {abstract}".lower())
    counts = Counter(tokens)
    counts.update(f"{a} {b}" for a, b in zip(tokens, tokens[1:]))
    return counts


def tfidf_weights(counts: Mapping[str, int], idf: Mapping[str, float]) -> dict[str, float]:
    """Sublinear-tf x idf weights, (1 + ln tf) * idf, of the terms that have an idf; each model
    L2-normalises them over the terms it keeps."""
    return {t: (1.0 + math.log(c)) * idf[t] for t, c in counts.items() if t in idf}


def features(
    title: str,
    abstract: str,
    *,
    rule_ids: Iterable[str],
    combined_designs: Iterable[str],
    n_animal: int,
    n_human: int,
    structured: bool,
) -> tuple[set[str], set[str], Counter]:
    """(fixed features, scaled word features, term counts) of one record; see the module doc."""
    fixed = {"r:" + r for r in rule_ids}
    fixed.update("c:" + v for v in combined_designs)
    fixed.add(f"n:animal{_bin(n_animal)}")
    fixed.add(f"n:human{_bin(n_human)}")
    fixed.add(f"n:pct{_bin(abstract.count('%'))}")
    no_abstract = not abstract.strip()
    words: set[str] = set()
    prefix = "u:" if no_abstract else "t:"
    title_tokens = [_norm(t) for t in _TOKEN.findall(title.lower())]
    prev = None
    for t in title_tokens:
        words.add(prefix + t)
        if prev is not None:
            words.add(prefix + prev + "_" + t)
        prev = t
    abstract_tokens = [_norm(t) for t in _TOKEN.findall(abstract.lower())]
    prev = None
    for t in abstract_tokens:
        words.add("a:" + t)
        if prev is not None:
            words.add("a:" + prev + "_" + t)
        prev = t
    padded = " " + " ".join(title.lower().split()) + " "
    words.update("k:" + padded[i : i + 4] for i in range(len(padded) - 3))
    if no_abstract:
        fixed.add("x:no_abstract")
    else:
        fixed.add(f"x:alen{_bin(len(abstract_tokens), 9)}")
    fixed.add(f"x:tlen{_bin(len(title_tokens))}")
    if title.startswith("["):
        fixed.add("x:title_translated")
    if structured:
        fixed.add("x:structured")
    return fixed, words, terms(title, abstract)


class DesignModel:
    """The committed weights, loaded once (`load_model`)."""

    def __init__(self, data: Mapping):
        self.version: str = data["version"]
        self.method = f"model:{self.version}"
        self.labels: tuple[str, ...] = tuple(data["labels"])
        self.intercepts = tuple(float(data["intercepts"][name]) for name in self.labels)
        self.thresholds = tuple(float(data["thresholds"][name]) for name in self.labels)
        # feature -> ((label index, weight), ...): one dict lookup per feature of a record
        table: dict[str, list[tuple[int, float]]] = {}
        for i, name in enumerate(self.labels):
            for feature, weight in data["weights"][name].items():
                table.setdefault(feature, []).append((i, float(weight)))
        self.table = {f: tuple(v) for f, v in table.items()}
        # the second (TF-IDF) model: per label its blend weight, intercept and term weights
        self.idf: dict[str, float] = {t: float(v) for t, v in data.get("idf", {}).items()}
        self.blends = tuple(float(data.get("blend", {}).get(name, 0.0)) for name in self.labels)
        self.term_intercepts = tuple(float(data.get("term_intercepts", {}).get(name, 0.0)) for name in self.labels)
        self.term_weights: tuple[dict[str, float], ...] = tuple(
            {t: float(w) for t, w in data.get("term_weights", {}).get(name, {}).items()} for name in self.labels
        )
        # label -> (slope, intercept) of the out-of-fold calibration (train_tagger)
        self.calibration = {
            name: tuple(float(v) for v in data.get("calibration", {}).get(name, (1.0, 0.0))) for name in self.labels
        }
        self.data = data

    def confidence(self, label: str, score: float) -> float:
        """The tag's confidence: the calibrated probability that the indexers would give the
        label to a record with this score (rounded, kept inside (0, 1])."""
        slope, intercept = self.calibration[label]
        return probability(slope * score + intercept)

    def scores(
        self, fixed: set[str], words: set[str], counts: Mapping[str, int] | None = None
    ) -> tuple[list[float], list[list[tuple[float, str]]]]:
        """Per label: the blended linear score, and the positive contributions (weight, feature);
        a contribution of the second model is named ``w:`` plus its word or word pair (joined by
        ``_``), so the evidence code finds it in the title or abstract."""
        scale = 1.0 / math.sqrt(len(words)) if words else 0.0
        totals = list(self.intercepts)
        contributions: list[list[tuple[float, str]]] = [[] for _ in self.labels]
        table = self.table
        for group, x in ((fixed, 1.0), (words, scale)):
            for feature in group:
                hit = table.get(feature)
                if hit is None:
                    continue
                for i, w in hit:
                    c = w * x
                    totals[i] += c
                    if c > 0:
                        contributions[i].append((c, feature))
        if counts is None or not any(self.blends):
            return totals, contributions
        weighted = tfidf_weights(counts, self.idf)  # once; each label normalises over its own terms
        for i, blend in enumerate(self.blends):
            if not blend:
                continue
            weights = self.term_weights[i]
            vec = [(t, v, weights[t]) for t, v in weighted.items() if t in weights]
            norm = math.sqrt(sum(v * v for _, v, _ in vec))
            total = self.term_intercepts[i]
            for term, v, w in vec:
                c = w * v / norm
                total += c
                if c > 0:
                    contributions[i].append((blend * c, "w:" + term.replace(" ", "_")))
            totals[i] += blend * total
        return totals, contributions

    def decide(
        self, fixed: set[str], words: set[str], counts: Mapping[str, int] | None = None
    ) -> list[tuple[str, float, list[tuple[float, str]]]]:
        """The labels whose score reaches their threshold (and no veto applies):
        (label, score, positive contributions)."""
        totals, contributions = self.scores(fixed, words, counts)
        out = []
        for i, name in enumerate(self.labels):
            if totals[i] >= self.thresholds[i] and not (VETOES.get(name, frozenset()) & fixed):
                out.append((name, totals[i], contributions[i]))
        return out


@lru_cache(maxsize=1)
def load_model(path: str | None = None) -> DesignModel:
    with open(path or MODEL_PATH, encoding="utf-8") as handle:
        return DesignModel(json.load(handle))


def probability(score: float) -> float:
    """The logistic function of a score, rounded, kept inside (0, 1]."""
    p = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, score))))
    return max(0.01, round(p, 2))


def _span(text: str, words: list[str]) -> str | None:
    rx = re.compile(r"\b" + r"\W+".join(re.escape(w) for w in words) + r"\b", re.I)
    m = rx.search(text)
    return m.group(0) if m else None


def readable_evidence(
    contributions: list[tuple[float, str]],
    *,
    title: str,
    abstract: str,
    rule_evidence: Mapping[str, str],
    design_evidence: Mapping[str, str],
    limit: int = 3,
) -> str:
    """The largest positive contributions that point at text: a rule's matched span, or a word pair
    or a word of four letters or more as written in the title or abstract; `limit` of them,
    ``; ``-joined, none inside an earlier one."""
    spans: list[str] = []
    seen: set[str] = set()
    for _, feature in sorted(contributions, key=lambda c: (-c[0], c[1])):
        kind, _, rest = feature.partition(":")
        span = None
        if kind == "r":
            span = rule_evidence.get(rest)
        elif kind == "c":
            span = design_evidence.get(rest)
        elif kind in ("t", "u", "a") and "<" not in rest and ("_" in rest or len(rest) >= 4):
            span = _span(abstract if kind == "a" else title, rest.split("_"))
        elif kind == "w" and ("_" in rest or len(rest) >= 4):
            span = _span(title, rest.split("_")) or _span(abstract, rest.split("_"))
        if span and not any(span.lower() in s for s in seen):
            seen.add(span.lower())
            spans.append(span)
            if len(spans) == limit:
                break
    return "; ".join(spans)
