"""Which stored PubMed record is a preprint's published version: pure matching and scoring.

Owns the three ways a link is made, strongest first: Europe PMC's own link (a published
record's commentCorrectionList names the preprint: harvest/europepmc.py reads it), the same DOI,
and a match on title + first author + year whose score must reach TITLE_THRESHOLD (with the
co-authors and, where both sides have one, the abstract's words in common). The threshold
was measured on clones of real records (`bench/preprint_links.py`, tests/test_preprint_links.py):
true pairs whose titles were edited the ways journals edit them, and near misses (different real
records by a first author of the same surname in the same years) that must stay apart.
Must never: read or write the database, or talk to the network.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

# Measured (bench/preprint_links.py): edited true pairs score >= 0.80, the closest near misses
# between different real records <= 0.62; the threshold sits between, nearer the misses' side
# being the costlier mistake (two different works merged).
TITLE_THRESHOLD = 0.75
# A published version appears in the preprint's year or up to three years later; a year earlier
# happens when the journal's issue date precedes the preprint server's posting of a revision.
YEARS_AFTER = 3
YEARS_BEFORE = 1
# When both sides name two authors or more, the share of surnames they have in common (of all
# surnames either names) must reach this: a journal version adds or drops an author or two, while
# the real near misses are an author's other papers, with other co-authors (Cottin & Cordier 2012
# and Cottin, Nunes & Mouthon 2011: titles one word apart, two works).
AUTHOR_OVERLAP = 0.5
# When both sides have an abstract of ABSTRACT_MIN_WORDS words or more, the share of distinct
# words they have in common (of all either uses) must reach this. A team's sibling papers (the
# same authors, titles one word apart: "learned / unlearned behavior") are told apart by what
# their abstracts say, where a title cannot be: measured (bench/preprint_links.py) on the real
# sibling pairs with two abstracts, and on clones of real abstracts edited as a journal edits a
# preprint's (sentences cut, reordered, numbers changed, a sentence added).
ABSTRACT_OVERLAP = 0.3
ABSTRACT_MIN_WORDS = 40


def normal_title(title: str | None) -> str:
    """Lower case, accents and markup gone, punctuation as spaces, one space between words."""
    text = unicodedata.normalize("NFKD", re.sub(r"<[^>]+>", " ", title or ""))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = re.sub(r"(?<=\d)[,.](?=\d{3}\b)", "", text)  # 1,000 and 1000 are one number
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def normal_surname(surname: str | None) -> str:
    return normal_title(surname).replace(" ", "")


def normal_doi(doi: str | None) -> str | None:
    """A DOI without its resolver prefix and a trailing version (`/v1`, `v2`), lower case."""
    if not doi:
        return None
    text = re.sub(r"^(https?://(dx\.)?doi\.org/|doi:)", "", doi.strip().lower())
    text = re.sub(r"(/v|\.v|v)\d+$", "", text)
    return text or None


def title_score(a: str | None, b: str | None) -> float:
    """How alike two titles are, 0 to 1: the ratio of matching characters of their normal forms."""
    x, y = normal_title(a), normal_title(b)
    if not x or not y:
        return 0.0
    return round(difflib.SequenceMatcher(None, x, y, autojunk=False).ratio(), 4)


_NUMBER = re.compile(r"\b(?:\d+|i{1,3}|iv|vi{0,3}|ix|x)\b")
# Titles that answer or correct another paper: a reply repeats the title it answers.
_REPLY = re.compile(
    r"^(?:response|reply|comment|commentary|erratum|correction|corrigendum|retraction|letter|author correction)\b"
)


def different_works(a: str | None, b: str | None) -> str | None:
    """Why two alike titles are still two works, or None: they number different parts of a
    series ("... Part I" / "... Part II", "(I)" / "(II)"), or one answers or corrects a paper."""
    x, y = normal_title(a), normal_title(b)
    if _NUMBER.findall(x) != _NUMBER.findall(y):
        return "different numbers or parts"
    if bool(_REPLY.match(x)) != bool(_REPLY.match(y)) or (_REPLY.match(x) and x != y):
        return "a reply or correction"
    return None


def author_overlap(a: list[str] | tuple[str, ...], b: list[str] | tuple[str, ...]) -> float | None:
    """Surnames in common over surnames in either (Jaccard), or None when a side names fewer
    than two authors (nothing to compare beyond the first author)."""
    x, y = {normal_surname(n) for n in a if n}, {normal_surname(n) for n in b if n}
    x.discard("")
    y.discard("")
    if len(x) < 2 or len(y) < 2:
        return None
    return len(x & y) / len(x | y)


def abstract_words(abstract: str | None) -> set[str]:
    return set(normal_title(abstract).split())


def abstract_overlap(a: str | None, b: str | None) -> float | None:
    """Distinct words in common over distinct words in either (Jaccard, on normalised words), or
    None when either abstract is missing or shorter than ABSTRACT_MIN_WORDS words."""
    x, y = normal_title(a).split(), normal_title(b).split()
    if len(x) < ABSTRACT_MIN_WORDS or len(y) < ABSTRACT_MIN_WORDS:
        return None
    words_x, words_y = set(x), set(y)
    return round(len(words_x & words_y) / len(words_x | words_y), 4)


def _at_least(overlap: float | None, threshold: float) -> bool:
    """An overlap reaches its threshold, or there was nothing to compare (None)."""
    return overlap is None or overlap >= threshold


def year_fits(preprint_year: int | None, article_year: int | None) -> bool:
    if preprint_year is None or article_year is None:
        return False
    return -YEARS_BEFORE <= article_year - preprint_year <= YEARS_AFTER


@dataclass(frozen=True)
class Candidate:
    pmid: int
    title: str | None
    surname: str | None
    year: int | None
    doi: str | None
    surnames: tuple[str, ...] = ()
    abstract: str | None = None


@dataclass(frozen=True)
class Match:
    pmid: int
    method: str  # europepmc, doi, title_author_year
    score: float
    detail: str


def best_title_match(
    title: str | None,
    surname: str | None,
    year: int | None,
    candidates: list[Candidate],
    surnames: tuple[str, ...] = (),
    abstract: str | None = None,
) -> Match | None:
    """The candidate with the same first-author surname, a year that fits, enough co-authors in
    common (AUTHOR_OVERLAP, when both name two or more), enough of the abstract's words in common
    (ABSTRACT_OVERLAP, when both have one) and the most alike title, when its score reaches
    TITLE_THRESHOLD; None otherwise. When a second candidate reaches it too, no link: the
    real near misses over the threshold are a team's sibling papers one word apart (morphine /
    cocaine self-injection, halothane / fentanyl supplementation), and the title cannot say which."""
    want = normal_surname(surname)
    if not want:
        return None
    scored = sorted(
        (
            (title_score(title, c.title), c)
            for c in candidates
            if normal_surname(c.surname) == want
            and year_fits(year, c.year)
            and different_works(title, c.title) is None
            and _at_least(author_overlap(surnames, c.surnames), AUTHOR_OVERLAP)
            and _at_least(abstract_overlap(abstract, c.abstract), ABSTRACT_OVERLAP)
        ),
        key=lambda pair: (-pair[0], pair[1].pmid),
    )
    if not scored or scored[0][0] < TITLE_THRESHOLD:
        return None
    if len(scored) > 1 and scored[1][0] >= TITLE_THRESHOLD:
        return None  # two records by the team over the threshold: siblings, and either could be it
    score, best = scored[0]
    return Match(
        best.pmid, "title_author_year", score, f"title {score:.2f}, first author {surname}, {year}->{best.year}"
    )
