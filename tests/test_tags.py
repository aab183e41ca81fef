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
def load_records_by_file() -> dict[Path, tuple[dict, ...]]:
    """Every article record of the files `evaluate` reads (the shared slices, records/ and the
    records-OWNER-NAME folders), per file, parsed once per process (the stored XML bytes dropped
    to keep memory small)."""
    out = {}
    for path in default_corpus_paths(SHARED):
        records = []
        for record in iter_records_from_files([path]):
            record.pop("xml", None)
            records.append(record)
        out[path] = tuple(records)
    return out


@functools.lru_cache(maxsize=1)
def load_shared_records() -> tuple[dict, ...]:
    return tuple(r for records in load_records_by_file().values() for r in records)


@pytest.fixture(scope="session")
def shared_records():
    # Missing data fails the suite (CI skips nothing): the tags are measured on real records.
    assert (SHARED / "pubmed" / "pubmed21n1298-part1.xml.gz").exists(), f"shared PubMed data not found in {SHARED}"
    return load_shared_records()


@pytest.fixture(scope="session")
def by_pmid(shared_records):
    out: dict[int, dict] = {}
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
    assert facet(tags, "population") == {
        "treatment_resistant_depression",
        "major_depressive_disorder",
        "bipolar_depression",
    }
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
    liability (conditioned place preference). No route and no human population. Methoxetamine is
    "a ketamine analog": an analogue is not the molecule, so no molecule tag at all."""
    r = by_pmid[34023336]
    tags = T.tag_article(r)
    assert T.primary_design(tags) == "preclinical_animal"
    assert facet(tags, "population") == {"animals"}
    assert facet(tags, "molecule") == set()
    assert facet(T.tag_article(r, use_indexing=False), "molecule") == set()
    # Still a ketamine record for the topic facets, and about depression (antidepressant effects).
    assert by_value(tags, "depression", "psychiatric")["evidence"] == "antidepressant"
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
    rule_ids = {r.id for r in T.RULES} | T.CODE_RULE_IDS
    for r in sample:
        mesh = {m["descriptor_name"] for m in r.get("mesh") or []}
        mesh_q = {f"{m['descriptor_name']}/{q['name']}" for m in r.get("mesh") or [] for q in m["qualifiers"]}
        concepts = {c["name"] for c in r.get("chemicals") or []} | {
            s["name"] for s in r.get("supplementary_concepts") or []
        }
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
    assert {t["method"] for t in text_only} <= (
        {f"rule:{x}" for x in {r.id for r in T.RULES} | T.CODE_RULE_IDS} | {D.load_model().method}
    )
    blank = dict(r, title="", abstract="", keywords=[])
    assert T.tag_article(blank, use_indexing=False) == []
    indexed = T.tag_article(blank)
    assert ("design", "narrative_review", "publication_type") in {
        (t["facet"], t["value"], t["method"]) for t in indexed
    }
    assert ("molecule", "unspecified_ketamine", "mesh") in {(t["facet"], t["value"], t["method"]) for t in indexed}


# -- primary design on real records -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "pmid,design",
    [
        (401194, "rct"),  # "Randomized steroid therapy of human kidney transplant rejection"
        (407559, "crossover_rct"),  # RCT publication type; "A double-blind, cross-over study"
        (418089, "case_report_series"),  # "Catheter-induced ascites--an unusual complication ..." (Case Reports)
        (38011560, "narrative_review"),  # Review
        (33787569, "meta_analysis"),  # Meta-Analysis + Systematic Review
        (399298, "preclinical_animal"),  # Encephalitozoon antibodies in dogs (MeSH Animals, no Humans)
    ],
)
def test_primary_design_of_indexed_records(by_pmid, pmid, design):
    assert T.primary_design(T.tag_article(by_pmid[pmid])) == design


def test_text_rules_on_real_abstracts(by_pmid):
    """The same designs from the text alone, where the abstract says so."""

    def text_design(pmid):
        return T.primary_design(T.tag_article(by_pmid[pmid], use_indexing=False))

    assert text_design(401194) == "rct"  # "This randomized, double-blind study ..."
    assert text_design(33787569) == "meta_analysis"  # "... a meta-analysis ..."
    assert text_design(399298) == "preclinical_animal"  # "Fifteen dogs ..."
    tags = T.tag_article(by_pmid[400867], use_indexing=False)  # "In a double-blind and randomized study"
    rct = by_value(tags, "design", "rct")
    assert rct["method"] == D.load_model().method
    assert rct["evidence"].split("; ")[:2] == ["randomized", "double-blind"]


def test_primary_design_precedence_and_default():
    assert T.primary_design([]) == "other"
    rule = {"facet": "design", "method": "rule:x", "evidence": "e", "confidence": 0.5}
    assert (
        T.primary_design([dict(rule, value="narrative_review"), dict(rule, value="case_report_series")])
        == "case_report_series"
    )
    # indexing outranks text rules
    assert (
        T.primary_design([dict(rule, value="rct"), dict(rule, value="commentary_letter", method="publication_type")])
        == "commentary_letter"
    )
    assert set(T.DESIGN_PRECEDENCE) == set(T.DESIGNS) - {"other"}


def test_awaiting_indexing_by_citation_status(shared_records):
    seen: dict[tuple[str, bool], bool] = {}  # (citation status, has MeSH) -> awaiting indexing
    for r in shared_records:
        seen.setdefault((r["citation_status"], bool(r.get("mesh"))), T.awaiting_indexing(r))
    assert seen[("MEDLINE", True)] is False
    assert seen[("Publisher", False)] is True
    assert seen[("In-Process", False)] is True
    assert seen[("In-Data-Review", False)] is True
    assert seen[("PubMed-not-MEDLINE", False)] is True


def test_every_shared_record_gets_a_primary_design_from_the_vocabulary(tagged_corpus):
    # How fast tagging is belongs to `make bench` (its import section), not to a timed test.
    _elapsed, tagged = tagged_corpus
    assert len(tagged) > 33000
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


def test_a_retrain_by_default_reads_the_records_the_committed_model_was_trained_on(shared_records):
    """`harvest train-tagger` without files must rewrite design_model.json unchanged (training is
    deterministic), not a model trained on other records that no one scored."""
    from harvest.train_tagger import training_corpus_paths, training_records

    by_file = load_records_by_file()
    default = [r for path in training_corpus_paths(SHARED) for r in by_file[path]]
    trained_on = D.load_model().data["training"]["records"]
    assert len(training_records(default)) == trained_on
    assert len(training_records(shared_records)) > trained_on  # evaluate reads more than that


def test_model_file_is_small_and_packaged():
    size = D.MODEL_PATH.stat().st_size
    assert size < 700_000, size
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert "design_model.json" in pyproject
    model = D.load_model()
    assert set(model.labels) == set(D.LABEL_VALUES)
    assert all(len(model.data["weights"][label]) <= model.data["training"]["keep"] for label in model.labels)
    assert all(
        len(model.data["term_weights"].get(label, {})) <= model.data["training"]["keep_terms"] for label in model.labels
    )
    assert set(model.data["idf"]) == {t for w in model.data["term_weights"].values() for t in w}


# -- modern records, text only (issue 21: tags on records awaiting indexing) ------------------------


def _text_designs(record) -> dict[str, dict]:
    return {t["value"]: t for t in T.tag_article(record, use_indexing=False) if t["facet"] == "design"}


def test_a_modern_report_of_four_patients_is_a_case_report_from_its_text(by_pmid):
    """19182507 (2009, records-qi29 folder; indexed "Case Reports"): four patients are "a few"
    individual patients, so from title and abstract alone it is a case report, and the model
    says why in the abstract's own words."""
    r = by_pmid[19182507]
    assert r["pub_year"] >= 2000 and r["citation_status"] == "MEDLINE"
    designs = _text_designs(r)
    assert set(designs) == {"case_report_series"}
    tag = designs["case_report_series"]
    assert tag["method"] == D.load_model().method and "We report four cases" in tag["evidence"]
    assert T.primary_design(T.tag_article(r, use_indexing=False)) == "case_report_series"


def test_a_modern_cohort_case_series_of_thousands_is_not_a_case_report(by_pmid):
    """25466483 (2015, the 2016 MEDLINE slice): "Prospective consecutive comparative cohort case
    series" of more than 4000 eyes is a study of a sample, not a report of individual patients."""
    r = by_pmid[25466483]
    assert "case series" in r["abstract"].lower()
    designs = _text_designs(r)
    assert "case_report_series" not in designs
    assert designs["observational_cohort"]["evidence"] == "cohort"


def test_a_modern_review_that_calls_itself_one_is_a_narrative_review_from_its_text(by_pmid):
    """28601431 (2017, records-xizhou folder; indexed "Review", not systematic): the text-only
    tagger calls it a narrative review, citing "this review"."""
    r = by_pmid[28601431]
    designs = _text_designs(r)
    assert set(designs) == {"narrative_review"}
    assert "this review" in designs["narrative_review"]["evidence"]
    assert not {"systematic_review", "meta_analysis"} & set(designs)


# -- what the title says the article is, and what an analogue is not ---------------------------------


def test_a_title_that_says_editorial_outweighs_the_design_model(by_pmid):
    """38546579 is titled "Editorial." (PubMed-not-MEDLINE, publication type Journal Article only);
    its abstract reads like a review, and the design model alone called it one."""
    r = by_pmid[38546579]
    for use_indexing in (True, False):
        tags = T.tag_article(r, use_indexing=use_indexing)
        assert T.primary_design(tags) == "commentary_letter"
        assert facet(tags, "design") == {"commentary_letter"}
        declared = by_value(tags, "design", "commentary_letter")
        assert (declared["method"], declared["evidence"]) == ("rule:design.title_declares", "Editorial")


def test_an_indexed_guideline_without_a_design_publication_type_is_a_guideline(by_pmid):
    """38534005, "The EFLM European Urinalysis Guideline 2023.", is MEDLINE-indexed with publication
    type Journal Article only: the indexers gave no design, so the title still counts."""
    r = by_pmid[38534005]
    assert T.is_indexed(r)
    tags = T.tag_article(r)
    assert T.primary_design(tags) == "guideline_consensus"
    assert by_value(tags, "design", "guideline_consensus")["evidence"] == "Guideline"
    assert T.primary_design(T.tag_article(r, use_indexing=False)) == "guideline_consensus"


def test_indexers_design_still_outranks_the_title(by_pmid):
    """A design publication type stands: the same guideline title on a record the indexers typed
    as a Review stays a review (clone of 38534005 with the publication type added)."""
    r = by_pmid[38534005]
    typed = dict(r, publication_types=[*r["publication_types"], {"ui": "D016454", "name": "Review"}])
    tags = T.tag_article(typed)
    assert T.primary_design(tags) == "narrative_review"
    assert "guideline_consensus" not in facet(tags, "design")


@pytest.mark.parametrize(
    "title,design",
    [
        ("Editorial.", "commentary_letter"),
        ("Induced abortion via telemedicine should become the norm: a commentary.", "commentary_letter"),
        ("Reply to Ringlander et al.", "commentary_letter"),
        (
            "Letter to the editor: importance of technique in the induction of glucuronyl transferase.",
            "commentary_letter",
        ),
        (
            "Australian recommendations for the management of hepatocellular carcinoma: a consensus statement.",
            "guideline_consensus",
        ),
        ("Guidelines for thrombolytic therapy of deep-vein thrombosis.", "guideline_consensus"),
        ("Adherence to the NICE depression guideline in primary care: a cohort study.", None),
        ("Response of the hypoxic ventilatory drive to ketamine.", None),
        ("Editorial board decisions and peer review times.", None),
    ],
)
def test_title_declarations(title, design):
    """Titles of real records (the shared corpus) and two that are about guidance or a response,
    not one: what `title_declares` reads as the article's kind."""
    declared = T.title_declares(title)
    assert (declared[0] if declared else None) == design
    if declared:
        assert declared[1] in title


def test_a_ketamine_analogue_is_not_ketamine_unless_the_title_names_ketamine(by_pmid):
    """Clones of 34023336: with ketamine in the title the record is about ketamine too; with
    "ketamine-like" as the only mention, nothing names the molecule."""
    r = by_pmid[34023336]
    both = dict(r, title="Ketamine and " + r["title"])
    assert facet(T.tag_article(both), "molecule") == {"unspecified_ketamine"}
    only_like = dict(
        r,
        abstract=r["abstract"]
        .replace("a ketamine analog", "a ketamine-like compound")
        .replace("efficacy of ketamine", "efficacy of NMDA antagonists"),
    )
    assert "ketamine" not in only_like["abstract"].replace("ketamine-like", "")
    assert facet(T.tag_article(only_like), "molecule") == set()


# -- depression in the psychiatric sense, or in another ---------------------------------------------


def load_julielab_15278624() -> dict:
    path = SHARED / "pubmed" / "records-JULIELab-julielab-topic-modeling" / "pubmedsample18n0001.xml.gz"
    return next(r for r in iter_records_from_files([path]) if r["pmid"] == 15278624)


def test_15278624_depression_of_ventilation_is_not_depression():
    """Cats lightly anaesthetised with ketamine: halothane "depressed the hypoxic ventilatory
    responses", "The depression of hypoxic ventilatory response", "significant depression on the
    hypoxic ventilatory response". No mood-disorder MeSH: depression only in another sense."""
    r = load_julielab_15278624()
    for use_indexing in (True, False):
        tags = T.tag_article(r, use_indexing=use_indexing)
        assert facet(tags, "depression") == {"other_sense_only"}
        tag = by_value(tags, "depression", "other_sense_only")
        assert tag["method"] == "rule:depression.other_sense"
        assert tag["evidence"] in r["abstract"] and "ventilatory" in tag["evidence"]
        assert not T.is_psychiatric(tags)


@pytest.mark.parametrize("pmid", [33984391, 34034067, 38011560, 34023336])
def test_ketamine_depression_records_are_psychiatric(by_pmid, pmid):
    tags = T.tag_article(by_pmid[pmid])
    assert facet(tags, "depression") == {"psychiatric"}
    assert T.is_psychiatric(tags)
    text_only = T.tag_article(by_pmid[pmid], use_indexing=False)
    assert facet(text_only, "depression") == {"psychiatric"}
    assert by_value(text_only, "depression", "psychiatric")["method"] == "rule:depression.psychiatric"


def test_indexed_mood_disorder_mesh_decides_the_psychiatric_sense(by_pmid):
    """38011560 carries MeSH Depression: the tag's evidence is the heading."""
    tag = by_value(T.tag_article(by_pmid[38011560]), "depression", "psychiatric")
    assert (tag["method"], tag["evidence"]) == ("mesh", "Depression")


OTHER_SENSES = [
    ("cardiorespiratory depression", "cardiorespiratory depression"),
    ("respiratory depression", "respiratory depression"),
    ("myocardial depression", "myocardial depression"),
    ("cortical spreading depression", "spreading depression"),
    ("ST-segment depression", "ST-segment depression"),
    ("long-term depression (LTD) at hippocampal synapses", "long-term depression"),
    ("depression of ventilation", "depression of ventilation"),
    ("depression of reflexes", "depression of reflexes"),
    ("CNS depression", "CNS depression"),
]


@pytest.mark.parametrize("phrase,evidence", OTHER_SENSES)
def test_a_record_whose_only_mention_is_another_sense_is_set_aside(by_pmid, phrase, evidence):
    """Clones of 34034067 (a ketamine-for-TRD record) whose title and abstract are one real sentence
    of its own with its only mention of depression replaced by another sense; MeSH left out."""
    r = by_pmid[34034067]
    sentence = f"Ketamine infusions were followed by {phrase} in some adults."
    clone = dict(r, title="Intravenous ketamine in adults", abstract=sentence, mesh=[], keywords=[])
    for use_indexing in (True, False):
        tags = T.tag_article(clone, use_indexing=use_indexing)
        assert facet(tags, "depression") == {"other_sense_only"}, tags
        assert by_value(tags, "depression", "other_sense_only")["evidence"] == evidence
    # The same clone saying it once in the psychiatric sense is psychiatric.
    both = dict(clone, abstract=sentence + " Depressive symptoms improved.")
    assert facet(T.tag_article(both), "depression") == {"psychiatric"}


def test_a_record_that_never_speaks_of_depression_has_no_depression_tag(by_pmid):
    r = by_pmid[38534005]  # the urinalysis guideline
    assert facet(T.tag_article(r), "depression") == set()


def test_other_senses_in_the_shared_corpus_are_rare_and_never_a_mood_mesh(tagged_corpus):
    """Over the 33,000 shared records: a record set aside never carries a mood-disorder MeSH
    heading, and psychiatric records far outnumber those set aside among records naming depression."""
    psychiatric = other = 0
    for r, tags in tagged_corpus[1]:
        values = facet(tags, "depression")
        assert len(values) <= 1
        if "other_sense_only" in values:
            other += 1
            assert not {m["descriptor_name"] for m in r.get("mesh") or []} & T.PSYCHIATRIC_MESH, r["pmid"]
        psychiatric += "psychiatric" in values
    assert psychiatric > 4 * other > 0
