"""The topic query: what "ketamine for depression and suicidality" means, versioned.

Owns the query as data (two concept groups that must both match), its PubMed
search string, and its local evaluation over a stored record, so that the
harvest, `import --match-topic` and the README all use one definition.
Bump QUERY_VERSION whenever the text changes: the next run then re-sweeps
everything (the catalog must equal what the new query returns).
Must never: talk to the network or the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeGuard

QUERY_VERSION = "1"


@dataclass(frozen=True)
class Concept:
    name: str
    # MeSH descriptors searched with PubMed's default explosion ([MeSH Terms]).
    mesh: tuple[str, ...]
    # The descendants of `mesh` in the MeSH tree that PubMed's explosion adds;
    # listed so the local matcher explodes the same way without the MeSH tree.
    mesh_narrower: tuple[str, ...]
    # Free-text terms for title/abstract/author keywords; a trailing * truncates.
    text: tuple[str, ...]


KETAMINE = Concept(
    name="ketamine",
    mesh=("Ketamine",),
    mesh_narrower=(),
    text=("ketamin*", "esketamin*", "arketamin*", "S-ketamine", "R-ketamine", "Spravato"),
)

DEPRESSION_OR_SUICIDALITY = Concept(
    name="depression or suicidality",
    mesh=(
        "Depression",
        "Depressive Disorder",
        "Depressive Disorder, Treatment-Resistant",
        "Bipolar Disorder",
        "Suicide",
        "Suicidal Ideation",
        "Anhedonia",
    ),
    mesh_narrower=(
        "Depression, Postpartum",
        "Depressive Disorder, Major",
        "Dysthymic Disorder",
        "Seasonal Affective Disorder",
        "Cyclothymic Disorder",
        "Bipolar and Related Disorders",
        "Suicide, Attempted",
        "Suicide, Completed",
    ),
    text=(
        "depression",
        "depressive",
        "depressed",
        "antidepressant*",
        "suicid*",
        "anhedoni*",
    ),
)

CONCEPTS = (KETAMINE, DEPRESSION_OR_SUICIDALITY)


def _pubmed_group(concept: Concept) -> str:
    parts = [f'"{m}"[MeSH Terms]' for m in concept.mesh]
    for term in concept.text:
        quoted = f'"{term}"' if (" " in term or "-" in term) and not term.endswith("*") else term
        parts.append(f"{quoted}[Title/Abstract]")
        parts.append(f"{quoted}[Other Term]")  # author keywords
    return "(" + " OR ".join(parts) + ")"


def pubmed_query() -> str:
    """The search string sent to PubMed's esearch."""
    return " AND ".join(_pubmed_group(c) for c in CONCEPTS)


TOPIC_QUERY = pubmed_query()


def _text_pattern(terms: tuple[str, ...]) -> re.Pattern:
    alternatives = []
    for term in terms:
        if term.endswith("*"):
            alternatives.append(re.escape(term[:-1]) + r"\w*")
        else:
            alternatives.append(re.escape(term) + r"\b")
    # PubMed's tokenizer treats hyphens and spaces alike.
    pattern = r"\b(?:" + "|".join(alternatives) + ")"
    pattern = pattern.replace(r"\-", r"[-\s]?")
    return re.compile(pattern, re.I)


_TEXT_PATTERNS = {c.name: _text_pattern(c.text) for c in CONCEPTS}
_MESH_SETS = {c.name: {m.lower() for m in c.mesh + c.mesh_narrower} for c in CONCEPTS}


def matches_topic(title: str | None, abstract: str | None, keywords=(), mesh_names=()) -> bool:
    """Evaluate the topic query locally over a record's title, abstract, keywords and MeSH."""
    text = " ".join(filter(None, [title, abstract, *keywords]))
    mesh = {m.lower() for m in mesh_names}
    for concept in CONCEPTS:
        if mesh & _MESH_SETS[concept.name]:
            continue
        if _TEXT_PATTERNS[concept.name].search(text):
            continue
        return False
    return True


# -- ClinicalTrials.gov: the same topic, in the registry's search fields ---------------
#
# The registry indexes a study's interventions and conditions as fields of their own
# (`query.intr`, `query.cond`; its search expands synonyms, e.g. "depression" finds
# "Major Depressive Disorder"), so the topic is the same two concepts as above, one per field.
# Bump TRIALS_QUERY_VERSION whenever these change: the next trials run then re-sweeps.

TRIALS_QUERY_VERSION = "1"

TRIALS_INTERVENTIONS = ("ketamine", "esketamine", "arketamine", "Spravato")
TRIALS_CONDITIONS = (
    "depression",
    "depressive disorder",
    "bipolar depression",
    "treatment-resistant depression",
    "suicidality",
    "suicidal ideation",
    "anhedonia",
)


def _essie_or(terms: tuple[str, ...]) -> str:
    return " OR ".join(f'"{t}"' if " " in t or "-" in t else t for t in terms)


def trials_query_params() -> dict[str, str]:
    """The `GET /studies` parameters that select the topic's studies on ClinicalTrials.gov."""
    return {
        "query.intr": _essie_or(TRIALS_INTERVENTIONS),
        "query.cond": _essie_or(TRIALS_CONDITIONS),
    }


def trials_query_text() -> str:
    """The trials topic as one line, for the run log and `harvest query`."""
    return " AND ".join(f"{k}=({v})" for k, v in trials_query_params().items())


NCT_ID = re.compile(r"NCT\d{8}")


def is_nct_id(value: str | None) -> TypeGuard[str]:
    """A ClinicalTrials.gov id as the registry writes it: NCT and eight digits."""
    return isinstance(value, str) and NCT_ID.fullmatch(value) is not None


def last_update_filter(since: str) -> str:
    """`filter.advanced` for studies whose last update was posted on or after `since` (YYYY-MM-DD)."""
    return f"AREA[LastUpdatePostDate]RANGE[{since},MAX]"


# -- Europe PMC: the same topic, in its search syntax, preprints only ------------------
#
# Europe PMC's `TITLE_ABS` searches title and abstract, `KW` author keywords, `MESH` MeSH headings
# (preprints seldom have any); a trailing * truncates, as in PubMed. `SRC:PPR` keeps preprints only.
# Bump PREPRINTS_QUERY_VERSION whenever this changes: the next preprints run then re-sweeps.

PREPRINTS_QUERY_VERSION = "1"


def _europepmc_group(concept: Concept) -> str:
    parts = [f'MESH:"{m}"' for m in concept.mesh]
    for term in concept.text:
        quoted = f'"{term}"' if (" " in term or "-" in term) and not term.endswith("*") else term
        parts.append(f"TITLE_ABS:{quoted}")
        parts.append(f"KW:{quoted}")
    return "(" + " OR ".join(parts) + ")"


def preprints_query(index_from: str | None = None, index_to: str | None = None) -> str:
    """The Europe PMC `query` for the topic's preprints; with dates (YYYY-MM-DD), only those
    Europe PMC first indexed in that span (`FIRST_IDATE`, both ends included)."""
    query = " AND ".join(_europepmc_group(c) for c in CONCEPTS) + " AND SRC:PPR"
    if index_from:
        query += f" AND FIRST_IDATE:[{index_from} TO {index_to or '3000-01-01'}]"
    return query


def published_versions_query(pmids: list[int]) -> str:
    """The Europe PMC `query` for the core records of these PubMed ids (their preprint links)."""
    return "SRC:MED AND (" + " OR ".join(f"EXT_ID:{p}" for p in pmids) + ")"


PPR_ID = re.compile(r"PPR\d+")


def is_ppr_id(value: str | None) -> TypeGuard[str]:
    """A Europe PMC preprint id: PPR and digits."""
    return isinstance(value, str) and PPR_ID.fullmatch(value) is not None
