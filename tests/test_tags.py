"""Evidence tags on real PubMed records (../shared/data), never on invented ones.

The shared files are parsed once per test session (`shared_records`, cached at module level so
tests/test_evaluate.py reuses the same parse).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import pytest

from harvest import design_model as D
from harvest import tags as T
from harvest.evaluate import default_corpus_paths, iter_records_from_files

from tests.conftest import DATA as SHARED  # ../shared/data, or $KETAMINE_SHARED_DATA
KETAMINE_PMIDS = (33984391, 34034067, 38011560, 34023336)


@functools.lru_cache(maxsize=1)
def load_shared_records() -> tuple[dict, ...]:
    """Every article record of the two big shared files and records/, parsed once per process
    (the stored XML bytes dropped to keep memory small)."""
    paths = default_corpus_paths(SHARED)
    out = []
    for record in iter_records_from_files(paths):
        record.pop("xml", None)
        out.append(record)
    return tuple(out)


@pytest.fixture(scope="session")
def shared_records():
    # Missing data fails the suite (CI skips nothing): the tags are measured on real records.
    assert (SHARED / "pubmed" / "pubmed21n1298-part1.xml.gz").exists(), f"shared PubMed data not found in {SHARED}"
    return load_shared_records()


@pytest.fixture(scope="session")
def by_pmid(shared_records):
    out = {}
    for r in shared_records:  # versioned citations: keep the highest version
        if r["pmid"] not in out or (r.get("pmid_version") or 1) > (out[r["pmid"]].get("pmid_version") or 1):
            out[r["pmid"]] = r
    return out


@pytest.fixture(scope="session")
def tagged_corpus(shared_records):
    """(seconds, [(record, tags)]) for the whole shared corpus, tagged once with indexing."""
    started = time.perf_counter()
    tagged = [(r, T.tag_article(r)) for r in shared_records]
    return time.perf_counter() - started, tagged


def facet(tags, name):
    return {t["value"] for t in tags if t["facet"] == name}


def by_value(tags, name, value):
    return next(t for t in tags if t["facet"] == name and t["value"] == value)


# -- the ketamine records, read by hand --------------------------------------------------------------


def test_34034067_intravenous_ketamine_in_trd(by_pmid):
    """Retrospective study of IV ketamine hydrochloride infusions in adults with treatment-resistant
    major depressive or bipolar disorder; cognition (DSST, TMT-B, PDQ-5-D) as outcome. Its last
    sentence calls for *larger randomized trials*: that must not make it an RCT. Its author keywords
    list "Esketamine", which it did not study: keywords make no tags."""
    r = by_pmid[34034067]
    tags = T.tag_article(r)
    assert facet(tags, "design") == {"observational_cohort"}
    assert T.primary_design(tags) == "observational_cohort"
    assert facet(tags, "molecule") == {"unspecified_ketamine"}
    assert facet(tags, "route") == {"intravenous"}
    assert by_value(tags, "route", "intravenous")["evidence"] == "intravenous ketamine"
    assert facet(tags, "population") == {"treatment_resistant_depression", "major_depressive_disorder",
                                         "bipolar_depression"}
    assert facet(tags, "outcome") == {"cognition"}
    assert facet(tags, "comparator") == set()
    assert {"treatment_resistance", "rapid_onset"} <= facet(tags, "theme")
    assert T.awaiting_indexing(r)  # a Publisher record


def test_33984391_review_of_the_anterior_cingulate_cortex(by_pmid):
    """Review (publisher's publication type; "We review ...") of ketamine's antidepressant action,
    human and animal work; "Infusions of ketamine" is the only route it names."""
    r = by_pmid[33984391]
    tags = T.tag_article(r)
    assert T.primary_design(tags) == "narrative_review"
    assert by_value(tags, "design", "narrative_review")["method"] == "publication_type"
    assert facet(tags, "molecule") == {"unspecified_ketamine"}
    assert facet(tags, "route") == {"intravenous"}
    assert by_value(tags, "route", "intravenous")["evidence"] == "Infusions of ketamine"
    assert facet(tags, "population") == {"major_depressive_disorder", "animals"}
    assert "rapid_onset" in facet(tags, "theme")
    text_only = T.tag_article(r, use_indexing=False)
    review = by_value(text_only, "design", "narrative_review")
    assert review["method"] == D.load_model().method
    assert review["evidence"].split("; ")[0] == "We review"  # the rule's span pushed the model most


def test_38011560_indexed_review(by_pmid):
    """MEDLINE-indexed review (MeSH Ketamine, Depression): no form of ketamine named, no route."""
    r = by_pmid[38011560]
    tags = T.tag_article(r)
    assert not T.awaiting_indexing(r)
    assert T.primary_design(tags) == "narrative_review"
    assert facet(tags, "design") == {"narrative_review"}
    assert facet(tags, "molecule") == {"unspecified_ketamine"}
    assert facet(tags, "route") == set()
    assert {"rapid_onset", "treatment_resistance", "durability_relapse_maintenance"} <= facet(tags, "theme")
    assert "relapse" in facet(tags, "outcome")


def test_34023336_methoxetamine_in_mice(by_pmid):
    """Methoxetamine enantiomers in mice, compared with ketamine's antidepressant action: a
    preclinical study, mechanism (NMDA, AMPA, glutamate), rapid onset, side effects and abuse
    liability (conditioned place preference). No route and no human population."""
    r = by_pmid[34023336]
    tags = T.tag_article(r)
    assert T.primary_design(tags) == "preclinical_animal"
    assert facet(tags, "population") == {"animals"}
    assert facet(tags, "molecule") == {"unspecified_ketamine"}
    assert facet(tags, "route") == set()
    assert {"mechanism", "rapid_onset", "safety_side_effects", "misuse_abuse"} <= facet(tags, "theme")
    assert by_value(tags, "outcome", "abuse_misuse")["evidence"] == "conditioned place preference"


def test_both_forms_named_in_a_letter(by_pmid):
    """33813054 comments on "(S)-ketamine and racemic (R/S)-ketamine": both forms are named, each
    with its own span, so no unspecified_ketamine."""
    tags = T.tag_article(by_pmid[33813054])
    assert facet(tags, "molecule") >= {"esketamine", "racemic_ketamine"}
    assert by_value(tags, "molecule", "esketamine")["evidence"] == "(S)-ketamine"
    assert by_value(tags, "molecule", "racemic_ketamine")["evidence"] == "(R/S)-ketamine"
    assert "unspecified_ketamine" not in facet(tags, "molecule")
    assert T.primary_design(tags) == "commentary_letter"


def test_topic_facets_need_a_ketamine_mention(tagged_corpus):
    """Route, molecule, comparator, outcome, theme and the human populations never fire on the
    shared records that do not mention ketamine (e.g. "oral" in a dentistry paper)."""
    topic_facets = {"molecule", "route", "comparator", "outcome", "theme"}
    for r, tags in tagged_corpus[1]:
        if T.mentions_ketamine(r):
            continue
        assert not [t for t in tags if t["facet"] in topic_facets], r["pmid"]
        assert facet(tags, "population") <= {"animals"}, r["pmid"]


# -- evidence and methods ---------------------------------------------------------------------------------


def test_every_tag_has_method_evidence_and_a_listed_value(shared_records, by_pmid):
    sample = [r for r in shared_records if r["pmid"] % 7 == 0] + [by_pmid[p] for p in KETAMINE_PMIDS]
    rule_ids = {r.id for r in T.RULES} | {"design.animal_only"}
    for r in sample:
        mesh = {m["descriptor_name"] for m in r.get("mesh") or []}
        mesh_q = {f"{m['descriptor_name']}/{q['name']}" for m in r.get("mesh") or [] for q in m["qualifiers"]}
        concepts = {c["name"] for c in r.get("chemicals") or []} | {s["name"] for s in r.get("supplementary_concepts") or []}
        pubtypes = {p["name"] for p in r.get("publication_types") or []}
        text = (r.get("title") or "", r.get("abstract") or "")
        for use_indexing in (True, False):
            for t in T.tag_article(r, use_indexing=use_indexing):
                assert set(t) == {"facet", "value", "method", "evidence", "confidence"}
                assert t["value"] in T.FACET_VALUES[t["facet"]]
                assert 0 < t["confidence"] <= 1
                if t["method"] == "publication_type":
                    assert use_indexing and t["evidence"] in pubtypes
                elif t["method"] == "mesh":
                    assert use_indexing and t["evidence"] in mesh | mesh_q | concepts
                elif t["method"] == D.load_model().method:
                    # the design model: one of its four designs, never on an indexed record, and its
                    # evidence is text it read (rule spans, words) from this record's title or abstract
                    assert t["facet"] == "design" and t["value"] in D.MODELLED_VALUES, t
                    assert not (use_indexing and T.is_indexed(r)), t
                    for part in t["evidence"].split("; "):
                        assert part and (part in text[0] or part in text[1]), t
                else:
                    assert t["method"].startswith("rule:") and t["method"][5:] in rule_ids
                    assert t["evidence"] and (t["evidence"] in text[0] or t["evidence"] in text[1]), t


def test_use_indexing_false_ignores_mesh_and_publication_types(by_pmid):
    """38011560 is indexed (MeSH Ketamine, publication type Review). Text-only tagging uses neither;
    with its title and abstract removed, text-only tagging finds nothing at all."""
    r = by_pmid[38011560]
    text_only = T.tag_article(r, use_indexing=False)
    assert {t["method"] for t in text_only} <= ({f"rule:{x.id}" for x in T.RULES} | {"rule:design.animal_only"}
                                               | {D.load_model().method})
    blank = dict(r, title="", abstract="", keywords=[])
    assert T.tag_article(blank, use_indexing=False) == []
    indexed = T.tag_article(blank)
    assert ("design", "narrative_review", "publication_type") in {(t["facet"], t["value"], t["method"]) for t in indexed}
    assert ("molecule", "unspecified_ketamine", "mesh") in {(t["facet"], t["value"], t["method"]) for t in indexed}


# -- primary design on real records -----------------------------------------------------------------------


@pytest.mark.parametrize("pmid,design", [
    (401194, "rct"),                 # "Randomized steroid therapy of human kidney transplant rejection"
    (407559, "crossover_rct"),       # RCT publication type; "A double-blind, cross-over study"
    (418089, "case_report_series"),  # "Catheter-induced ascites--an unusual complication ..." (Case Reports)
    (38011560, "narrative_review"),  # Review
    (33787569, "meta_analysis"),     # Meta-Analysis + Systematic Review
    (399298, "preclinical_animal"),  # Encephalitozoon antibodies in dogs (MeSH Animals, no Humans)
])
def test_primary_design_of_indexed_records(by_pmid, pmid, design):
    assert T.primary_design(T.tag_article(by_pmid[pmid])) == design


def test_text_rules_on_real_abstracts(by_pmid):
    """The same designs from the text alone, where the abstract says so."""
    def text_design(pmid):
        return T.primary_design(T.tag_article(by_pmid[pmid], use_indexing=False))

    assert text_design(401194) == "rct"                # "This randomized, double-blind study ..."
    assert text_design(33787569) == "meta_analysis"     # "... a meta-analysis ..."
    assert text_design(399298) == "preclinical_animal"  # "Fifteen dogs ..."
    tags = T.tag_article(by_pmid[400867], use_indexing=False)  # "In a double-blind and randomized study"
    rct = by_value(tags, "design", "rct")
    assert rct["method"] == D.load_model().method
    assert rct["evidence"].split("; ")[:2] == ["randomized", "double-blind"]


def test_primary_design_precedence_and_default():
    assert T.primary_design([]) == "other"
    rule = {"facet": "design", "method": "rule:x", "evidence": "e", "confidence": 0.5}
    assert T.primary_design([dict(rule, value="narrative_review"), dict(rule, value="case_report_series")]) == \
        "case_report_series"
    # indexing outranks text rules
    assert T.primary_design([dict(rule, value="rct"),
                             dict(rule, value="commentary_letter", method="publication_type")]) == "commentary_letter"
    assert set(T.DESIGN_PRECEDENCE) == set(T.DESIGNS) - {"other"}


def test_awaiting_indexing_by_citation_status(shared_records):
    seen = {}
    for r in shared_records:
        seen.setdefault((r["citation_status"], bool(r.get("mesh"))), T.awaiting_indexing(r))
    assert seen[("MEDLINE", True)] is False
    assert seen[("Publisher", False)] is True
    assert seen[("In-Process", False)] is True
    assert seen[("In-Data-Review", False)] is True
    assert seen[("PubMed-not-MEDLINE", False)] is True


def test_tagging_the_whole_shared_corpus_is_fast(tagged_corpus):
    elapsed, tagged = tagged_corpus
    assert len(tagged) > 33000
    # about 6-8 s on a quiet 2-core machine; generous so a loaded CI box does not fail it
    assert elapsed < 45, f"{elapsed:.1f} s"
    assert all(T.primary_design(tags) in T.DESIGNS for _, tags in tagged)


# -- the design model -------------------------------------------------------------------------------------


def test_indexed_records_keep_their_indexing_designs(tagged_corpus):
    """The design model speaks only for records NLM has not indexed: on an indexed record the
    designs come from publication types and MeSH, and articles.study_design follows them."""
    model_method = D.load_model().method
    indexed = [(r, tags) for r, tags in tagged_corpus[1] if T.is_indexed(r)]
    assert len(indexed) > 15000
    for r, tags in indexed:
        assert all(t["method"] != model_method for t in tags), r["pmid"]
    unindexed = [tags for r, tags in tagged_corpus[1] if not T.is_indexed(r)]
    assert sum(1 for tags in unindexed if any(t["method"] == model_method for t in tags)) > 100


def test_committed_model_matches_the_feature_code(by_pmid):
    """design_model.json keeps the scores scikit-learn gave some training records when it was
    trained; the pure-Python inference over today's feature code must give the same scores. A rule
    change that alters the model's input fails here: retrain with `python -m harvest.train_tagger`."""
    model = D.load_model()
    assert model.data["rules_version"] == T.RULES_VERSION
    checks = model.data["checks"]
    assert len(checks) >= 20
    for pmid, expected in checks.items():
        r = by_pmid[int(pmid)]
        assert r["pmid"] % 5 != 0 and r["citation_status"] == "MEDLINE"  # training records only
        totals, _ = model.scores(*T.design_features(r))
        for label, score in zip(model.labels, totals):
            assert score == pytest.approx(expected[label], abs=2e-3), (pmid, label)


def test_model_file_is_small_and_packaged():
    size = D.MODEL_PATH.stat().st_size
    assert size < 700_000, size
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert "design_model.json" in pyproject
    model = D.load_model()
    assert set(model.labels) == set(D.LABEL_VALUES)
    assert all(len(model.data["weights"][label]) <= model.data["training"]["keep"] for label in model.labels)
    assert all(len(model.data["term_weights"].get(label, {})) <= model.data["training"]["keep_terms"]
               for label in model.labels)
    assert set(model.data["idf"]) == {t for w in model.data["term_weights"].values() for t in w}
