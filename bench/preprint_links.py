"""`python -m bench.preprint_links`: measure the title + first author + year threshold of
harvest/preprint_links.py on clones of real records.

True pairs: each real PubMed record (title of 4 words or more, a first author, a year) stands for
a published paper, and a "preprint" clone of it is made in code with its title edited the ways
titles change between a preprint and its journal version (case and final period, punctuation,
British spelling, a word replaced, a word dropped, a short phrase added, two edits at once; a
subtitle dropped is measured apart, as a known miss). Near misses: pairs of different real
records whose first authors share a surname and whose years fit (what the matcher compares),
the most alike titles first. Nothing is written to disk.
"""

from __future__ import annotations

import difflib
import gzip
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

from harvest.preprint_links import (
    ABSTRACT_MIN_WORDS,
    ABSTRACT_OVERLAP,
    AUTHOR_OVERLAP,
    TITLE_THRESHOLD,
    abstract_overlap,
    author_overlap,
    different_works,
    normal_surname,
    normal_title,
    title_score,
    year_fits,
)
from harvest.pubmed_xml import parse_articles

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pubmed"
SEED = 20


def real_papers(paths: list[Path] | None = None) -> list[dict]:
    """(pmid, title, surname, year) of every real record with a title of 4+ words."""
    if paths is None:
        paths = sorted(p for p in DATA.rglob("*") if p.is_file() and p.name.endswith((".xml", ".xml.gz")))
    papers: dict[int, dict] = {}
    for path in paths:
        raw = gzip.open(path).read() if path.name.endswith(".gz") else path.read_bytes()
        try:
            records = list(parse_articles(raw, source_name=path.name))
        except Exception:  # noqa: BLE001 - eLinkResult, eSummaryResult: not records
            continue
        for r in records:
            authors = [a for a in r.get("authors") or [] if a.get("last_name")]
            title = r.get("title") or ""
            if not authors or not r.get("pub_year") or len(normal_title(title).split()) < 4:
                continue
            papers[r["pmid"]] = {
                "pmid": r["pmid"],
                "title": title,
                "surname": authors[0]["last_name"],
                "surnames": tuple(a["last_name"] for a in authors),
                "year": r["pub_year"],
                "norm": normal_title(title),
                "abstract": r.get("abstract") or None,
            }
    return list(papers.values())


def _replace_word(title: str, rng: random.Random, vocabulary: list[str]) -> str:
    words = title.split()
    i = rng.randrange(len(words))
    words[i] = rng.choice(vocabulary)
    return " ".join(words)


def _drop_word(title: str, rng: random.Random) -> str:
    words = title.split()
    del words[rng.randrange(len(words))]
    return " ".join(words)


EDITS = {
    "case and period": lambda t, rng, v: t.lower().rstrip("."),
    "punctuation": lambda t, rng, v: t.replace(":", " -").replace("-", " ").replace(",", ""),
    "british spelling": lambda t, rng, v: re.sub(r"iz(e|ed|es|ing|ation)\b", r"is\1", t).replace("tumor", "tumour"),
    "a word replaced": _replace_word,
    "a word dropped": lambda t, rng, v: _drop_word(t, rng),
    "a phrase added": lambda t, rng, v: t.rstrip(".") + ": a pilot study",
    "two edits": lambda t, rng, v: _drop_word(_replace_word(t, rng, v), rng),
}


def true_pair_scores(papers: list[dict], per_edit: int = 400) -> dict[str, list[float]]:
    """Scores of edited "preprint" clones against their own real record, by kind of edit."""
    rng = random.Random(SEED)
    vocabulary = sorted({w for p in papers[:2000] for w in p["title"].split() if len(w) > 3})
    sample = rng.sample(papers, min(per_edit, len(papers)))
    scores: dict[str, list[float]] = {}
    for name, edit in EDITS.items():
        scores[name] = []
        for p in sample:
            edited = edit(p["title"], rng, vocabulary)
            scores[name].append(0.0 if different_works(edited, p["title"]) else title_score(edited, p["title"]))
    with_subtitle = [p for p in sample if ":" in p["title"]]
    scores["subtitle dropped (known miss)"] = [title_score(p["title"].split(":")[0], p["title"]) for p in with_subtitle]
    return scores


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")
_NUMBER_TOKEN = re.compile(r"\d+(?:\.\d+)?")


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text.strip()) if s]


def _cut_a_third(text: str, rng: random.Random) -> str:
    sentences = _sentences(text)
    keep = [s for i, s in enumerate(sentences) if i % 3 != 2] or sentences
    return " ".join(keep)


def _numbers_changed(text: str, rng: random.Random) -> str:
    return _NUMBER_TOKEN.sub(lambda m: str(rng.randrange(1, 1000)), text)


def _words_replaced(text: str, rng: random.Random, vocabulary: list[str], share: float = 0.1) -> str:
    words = text.split()
    for i in rng.sample(range(len(words)), max(1, int(len(words) * share))):
        words[i] = rng.choice(vocabulary)
    return " ".join(words)


def _sentence_added(text: str, rng: random.Random, others: list[str]) -> str:
    return text + " " + rng.choice(_sentences(rng.choice(others)) or ["Further work is needed."])


ABSTRACT_EDITS = {
    "sentences reordered": lambda t, rng, v, o: " ".join(rng.sample(_sentences(t), len(_sentences(t)))),
    "numbers changed": lambda t, rng, v, o: _numbers_changed(t, rng),
    "a third of the sentences cut": lambda t, rng, v, o: _cut_a_third(t, rng),
    "a sentence added": lambda t, rng, v, o: _sentence_added(t, rng, o),
    "one word in ten replaced": lambda t, rng, v, o: _words_replaced(t, rng, v),
    "one word in five replaced": lambda t, rng, v, o: _words_replaced(t, rng, v, 0.2),
    "all at once (cut, numbers, 1 in 10 words, a sentence)": lambda t, rng, v, o: _sentence_added(
        _words_replaced(_numbers_changed(_cut_a_third(t, rng), rng), rng, v), rng, o
    ),
}


def abstract_true_pair_scores(papers: list[dict], per_edit: int = 400) -> dict[str, list[float]]:
    """Abstract overlaps of edited "preprint" clones of real abstracts against their own record,
    by kind of edit (the ways a journal version's abstract differs from the preprint's)."""
    rng = random.Random(SEED)
    with_abstract = [p for p in papers if len(normal_title(p.get("abstract")).split()) >= ABSTRACT_MIN_WORDS]
    if not with_abstract:
        return {}
    vocabulary = sorted({w for p in with_abstract[:2000] for w in (p["abstract"] or "").split() if len(w) > 3})
    others = [p["abstract"] for p in with_abstract[:2000]]
    sample = rng.sample(with_abstract, min(per_edit, len(with_abstract)))
    scores: dict[str, list[float]] = {}
    for name, edit in ABSTRACT_EDITS.items():
        # None: the edited abstract is too short to compare, and the matcher does not compare it.
        overlaps = [abstract_overlap(edit(p["abstract"], rng, vocabulary, others), p["abstract"]) for p in sample]
        scores[name] = [1.0 if o is None else o for o in overlaps]
    return scores


def near_miss_scores(papers: list[dict], top: int = 50) -> list[tuple[float, dict, dict]]:
    """The `top` most alike pairs of different real records that the matcher would compare
    (first authors of one surname, years that fit), most alike first."""
    by_surname: dict[str, list[dict]] = defaultdict(list)
    for p in papers:
        by_surname[normal_surname(p["surname"])].append(p)
    pairs = []
    for group in by_surname.values():
        if len(group) < 2 or len(group) > 400:  # 400+: one name's records compared pairwise costs too much
            continue
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if normal_title(a["title"]) == normal_title(b["title"]):
                    continue  # one work twice (PubMed's versioned citations, a reprint): not a near miss
                if different_works(a["title"], b["title"]):
                    continue  # told apart before any score (parts of a series, replies)
                if (author_overlap(a["surnames"], b["surnames"]) or 1.0) < AUTHOR_OVERLAP:
                    continue  # other co-authors: told apart before any score
                if not (year_fits(a["year"], b["year"]) or year_fits(b["year"], a["year"])):
                    continue
                # quick_ratio bounds ratio from above: pairs it puts under 0.5 are far from any threshold.
                if difflib.SequenceMatcher(None, a["norm"], b["norm"], autojunk=False).quick_ratio() >= 0.5:
                    pairs.append((title_score(a["title"], b["title"]), a, b))
    pairs.sort(key=lambda x: -x[0])
    return pairs[:top]


def main(argv: list[str]) -> None:
    papers = real_papers()
    print(f"{len(papers)} real records with a title of 4+ words, a first author and a year")
    print(f"threshold in harvest/preprint_links.py: {TITLE_THRESHOLD}")
    print("true pairs (edited clone vs its record): min / 5th percentile / share at or over the threshold")
    for name, values in true_pair_scores(papers).items():
        values = sorted(values)
        share = sum(v >= TITLE_THRESHOLD for v in values) / len(values)
        print(f"  {name:<32} n={len(values):<4} min {values[0]:.3f}  p5 {values[len(values) // 20]:.3f}  {share:.1%}")
    misses = near_miss_scores(papers, top=100000)
    print("near misses (different records, same first-author surname, years that fit), most alike:")
    for score, a, b in misses[:25]:
        print(f"  {score:.3f}  {a['pmid']} {a['title'][:60]!r} | {b['pmid']} {b['title'][:60]!r}")
    over = [m for m in misses if m[0] >= TITLE_THRESHOLD]
    print(f"near misses at or over the threshold: {len(over)}")
    print(f"abstracts (ABSTRACT_OVERLAP {ABSTRACT_OVERLAP}, both {ABSTRACT_MIN_WORDS}+ words):")
    print("  true pairs (edited clone of a real abstract vs its record): min / 5th percentile / share kept")
    for name, values in abstract_true_pair_scores(papers).items():
        values = sorted(values)
        share = sum(v >= ABSTRACT_OVERLAP for v in values) / len(values)
        at = "  ".join(f"{t}: {sum(v >= t for v in values) / len(values):.1%}" for t in (0.3, 0.35, 0.4))
        print(
            f"    {name:<54} n={len(values):<4} min {values[0]:.3f}  p5 {values[len(values) // 20]:.3f}  {share:.1%}  ({at})"
        )
    both = [
        (overlap, score, a, b)
        for score, a, b in over
        if (overlap := abstract_overlap(a["abstract"], b["abstract"])) is not None
    ]
    apart = sum(1 for overlap, *_ in both if overlap < ABSTRACT_OVERLAP)
    print(f"  near misses over the title threshold with two abstracts: {len(both)}; told apart by them: {apart}")
    for overlap, score, a, b in sorted(both, key=lambda x: -x[0]):
        print(
            f"    abstract {overlap:.3f} title {score:.3f}  {a['pmid']} {a['title'][:45]!r} | {b['pmid']} {b['title'][:45]!r}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
