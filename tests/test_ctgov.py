"""ClinicalTrials.gov: the pure parse on real studies, and the client against the stand-in
(paging, countTotal, filter.ids, 404, and the faults it rides out)."""

from __future__ import annotations

import json
import zlib

import pytest

from harvest import ctgov
from harvest.config import CtgovSettings
from harvest.ctgov import CtgovClient, CtgovError, parse_study
from harvest.query import TRIALS_QUERY_VERSION, trials_query_params
from harvest.runner import choose_trials_mode
from tests.ctgov_stand_in import CTGOV, CtgovStandIn, StudyStore


def study(path: str) -> dict:
    return json.loads((CTGOV / path).read_text())


def client_for(server: CtgovStandIn, **kw) -> tuple[CtgovClient, list[float]]:
    slept: list[float] = []
    settings = CtgovSettings(
        base_url=server.url, requests_per_second=50, backoff_base=0.01, backoff_cap=0.05, max_tries=4, **kw
    )
    return CtgovClient(settings, sleep=slept.append), slept


# -- the pure parse ------------------------------------------------------------------


def test_a_completed_study_with_results_reads_as_the_registry_shows_it():
    record = parse_study(study("aact/NCT05594173.json"))
    row = ctgov.trial_row(record)
    assert (row["nct_id"], row["title"], row["acronym"]) == (
        "NCT05594173",
        "Chewing and Oral Processing of Solid Food",
        "NIH_HVX6",
    )
    assert (row["overall_status"], row["study_type"], row["phases"]) == ("COMPLETED", "OBSERVATIONAL", None)
    assert (row["enrollment_count"], row["enrollment_type"]) == (20, "ACTUAL")
    assert (row["start_date"], row["start_date_type"]) == ("2019-09-13", "ACTUAL")
    assert (row["primary_completion_date"], row["completion_date"]) == ("2020-12-20", "2020-12-20")
    assert (row["first_posted"], row["results_first_posted"], row["last_update_posted"]) == (
        "2022-10-26",
        "2022-11-21",
        "2022-11-21",
    )
    assert (row["lead_sponsor"], row["lead_sponsor_class"], row["has_results"]) == (
        "University Health Network, Toronto",
        "OTHER",
        1,
    )
    rows = ctgov.child_rows(record)
    assert rows["trial_conditions"] == [("NCT05594173", 1, "Dysphagia")]
    assert rows["trial_interventions"] == [("NCT05594173", 1, "OTHER", "Food texture modification", None, None)]
    assert [(o[2], o[3], o[4]) for o in rows["trial_outcomes"]] == [
        ("primary", "Number of Chewing Cycles Per Bolus", "Baseline (single timepoint only)"),
        ("primary", "Total Chewing Duration Per Bolus", "Baseline (single timepoint only)"),
    ]


def test_a_terminated_phase_2_trial_has_its_design_and_no_results():
    row = ctgov.trial_row(parse_study(study("cyanheads-examples/study_NCT00184067_2025-06-17T11-17-42-480Z.json")))
    assert (row["overall_status"], row["phases"], row["has_results"]) == ("TERMINATED", "PHASE2", 0)
    assert row["allocation"] and row["masking"]


def test_the_registry_references_become_links_to_papers_with_their_type():
    record = parse_study(study("py-load-ctgov/NCT04267848.json"))
    assert ctgov.reference_links(record) == [
        (33878954, "ClinicalTrials.gov", "NCT04267848", "registry_reference:DERIVED")
    ]
    background = parse_study(study("aact/NCT03630471.json"))
    kinds = [link[3] for link in ctgov.reference_links(background)]
    assert (kinds.count("registry_reference:BACKGROUND"), kinds.count("registry_reference:DERIVED")) == (7, 3)


def test_the_stored_json_is_the_study_itself_compressed():
    import zlib

    raw = study("aact/NCT06171568.json")
    row = ctgov.trial_row(parse_study(raw))
    assert json.loads(zlib.decompress(row["raw_json_zlib"])) == raw


def test_interventions_get_the_paper_taggers_molecule_and_route():
    # A real study with its intervention renamed: the tagger reads trials as it reads papers.
    raw = study("cyanheads-examples/study_NCT03934567_2025-06-17T11-17-59-791Z.json")
    raw["protocolSection"]["armsInterventionsModule"]["interventions"][0].update(
        name="Esketamine", description="Esketamine 56 mg intranasal, twice weekly"
    )
    (row,) = ctgov.child_rows(parse_study(raw))["trial_interventions"]
    assert (row[4], row[5]) == ("esketamine", "intranasal")


def test_what_a_new_version_changed_is_named():
    old = ctgov.trial_row(parse_study(study("aact/NCT06171568.json")))

    def change(s):
        status = s["protocolSection"]["statusModule"]
        status["overallStatus"] = "COMPLETED"
        status["primaryCompletionDateStruct"] = {"date": "2026-01-31", "type": "ACTUAL"}
        s["protocolSection"]["designModule"]["enrollmentInfo"] = {"count": 380, "type": "ACTUAL"}
        s["hasResults"] = True
        status["resultsFirstPostDateStruct"] = {"date": "2026-06-01", "type": "ACTUAL"}

    new_raw = study("aact/NCT06171568.json")
    change(new_raw)
    events = dict(ctgov.change_events(old, ctgov.trial_row(parse_study(new_raw))))
    assert events["status_changed"] == "NOT_YET_RECRUITING -> COMPLETED"
    assert events["results_posted"] == "2026-06-01"
    assert events["completion_date_moved"].startswith("primary completion ")
    assert events["enrollment_changed"] == "400 ESTIMATED -> 380 ACTUAL"


def test_a_study_without_an_nct_id_is_refused():
    raw = study("aact/NCT06171568.json")
    del raw["protocolSection"]["identificationModule"]["nctId"]
    with pytest.raises(ValueError, match="NCT id"):
        parse_study(raw)


def test_the_topic_is_one_definition_for_the_registry_too():
    params = trials_query_params()
    assert params["query.intr"] == "ketamine OR esketamine OR arketamine OR Spravato"
    assert "depression" in params["query.cond"] and "suicidality" in params["query.cond"]
    assert choose_trials_mode(None, full=False, overlap_days=3)[1] is None
    changed = {"query_version": "0", "watermark": "2026-01-10"}
    assert choose_trials_mode(changed, full=False, overlap_days=3) == (
        f"full (query changed 0 -> {TRIALS_QUERY_VERSION})",
        None,
    )
    same = {"query_version": TRIALS_QUERY_VERSION, "watermark": "2026-01-10"}
    assert choose_trials_mode(same, full=False, overlap_days=3)[1].isoformat() == "2026-01-07"


# -- the client against the stand-in --------------------------------------------------


def test_every_page_is_followed_and_the_total_counted():
    with CtgovStandIn() as server:
        client, _ = client_for(server, page_size=4)
        pages = list(client.iter_pages(trials_query_params()))
    assert [len(p.studies) for p in pages] == [4, 2]
    assert pages[0].total_count == 6 and pages[-1].next_page_token is None
    assert [r[1].get("pageToken") for r in server.requests] == [None, "page4"]
    assert server.requests[0][1]["query.intr"].startswith("ketamine")


def test_ids_the_registry_does_not_know_are_left_out_and_a_single_unknown_study_is_none():
    with CtgovStandIn() as server:
        client, _ = client_for(server)
        found = client.studies_by_ids(["NCT05594173", "NCT99999999"])
        assert [ctgov.parse_study(s).nct_id for s in found] == ["NCT05594173"]
        assert client.study("NCT99999999") is None
        study = client.study("NCT06171568")
        assert study is not None and study["protocolSection"]["identificationModule"]["nctId"] == "NCT06171568"


def test_a_last_update_filter_lists_only_studies_updated_since():
    with CtgovStandIn() as server:
        client, _ = client_for(server)
        page = client.studies_page({"filter.advanced": "AREA[LastUpdatePostDate]RANGE[2025-01-01,MAX]"})
    assert sorted(ctgov.parse_study(s).nct_id for s in page.studies) == ["NCT03934567"]


@pytest.mark.parametrize("kind", ["429", "503", "truncated", "malformed"])
def test_a_broken_answer_is_asked_again(kind):
    with CtgovStandIn() as server:
        fault = server.faults.add(kind, times=2)
        client, slept = client_for(server)
        page = client.studies_page(trials_query_params())
    assert fault.fired == 2 and len(page.studies) == 6
    assert client.stats.retries == 2
    if kind == "429":
        assert min(slept) >= 1.0  # its Retry-After: 1


def test_a_service_that_keeps_failing_fails_with_one_line_naming_it():
    with CtgovStandIn() as server:
        server.faults.add("503", times=None)
        client, _ = client_for(server)
        with pytest.raises(CtgovError) as failure:
            client.studies_page(trials_query_params())
    assert "gave up after 4 tries" in str(failure.value) and "HTTP 503" in str(failure.value)
    assert "\n" not in str(failure.value)


def test_the_limiter_is_the_registrys_own():
    from harvest.eutils import EutilsClient

    assert CtgovClient(CtgovSettings()).limiter is not EutilsClient().limiter
    assert CtgovClient(CtgovSettings()).limiter is CtgovClient(CtgovSettings()).limiter
    # one request a second by default: one in a one-second window
    assert (CtgovClient(CtgovSettings()).limiter.limit, CtgovClient(CtgovSettings()).limiter.window) == (1, 1.0)


def test_a_clone_keeps_the_real_study_and_changes_only_its_id():
    store = StudyStore.recorded()
    clone = store.add_clone("NCT02060188", "NCT05594173", references=[(29355075, "RESULT")])
    assert clone["protocolSection"]["statusModule"] == store.studies["NCT05594173"]["protocolSection"]["statusModule"]
    assert "NCT02060188" not in store.topic


# -- answers of another shape than the API's ---------------------------------------------


def test_fields_of_another_json_type_are_left_empty_not_a_failed_run():
    """Each field of a real study replaced by a value of another JSON type (a module that is a
    string, a list that is a string, counts that are true, Infinity or past SQLite's integers)."""
    real = study("aact/NCT05594173.json")
    protocol = real["protocolSection"]
    crafted = json.loads(json.dumps(real))
    crafted["protocolSection"]["statusModule"] = "COMPLETED"
    crafted["protocolSection"]["conditionsModule"]["conditions"] = "Dysphagia"
    crafted["protocolSection"]["designModule"]["phases"] = "PHASE2"
    crafted["protocolSection"]["designModule"]["enrollmentInfo"]["count"] = float("inf")
    crafted["protocolSection"]["armsInterventionsModule"]["interventions"].append(None)
    crafted["hasResults"] = "false"
    crafted.pop("resultsSection", None)
    record = parse_study(crafted)
    row = ctgov.trial_row(record)
    assert row["nct_id"] == "NCT05594173" and row["title"] == protocol["identificationModule"]["briefTitle"]
    assert (row["overall_status"], row["start_date"], row["phases"], row["enrollment_count"]) == (None,) * 4
    assert record.conditions == [] and row["has_results"] == 0
    assert [i.name for i in record.interventions] == ["Food texture modification"]
    for count in (True, 10**30, "²⁰", -5, float("nan")):
        crafted["protocolSection"]["designModule"]["enrollmentInfo"]["count"] = count
        assert parse_study(crafted).enrollment_count is None, count
    crafted["protocolSection"]["identificationModule"]["nctId"] = 5594173
    with pytest.raises(ValueError, match=r"a study without an NCT id \(nctId '5594173'\)"):
        parse_study(crafted)


NOT_DATES = ("²⁰¹⁹-05", "2019-13", "2019-02-30", "May 2019", "2019-05-01; drop table trials", "0000-01", 2019)


def test_dates_that_name_no_day_are_left_empty_and_the_study_is_kept():
    """The metadata documents these columns as YYYY-MM or YYYY-MM-DD and the catalog sorts them as
    text: a real study whose start date is none of those keeps every other field, and the registry's
    own words stay in the stored JSON."""
    real = study("aact/NCT05594173.json")
    expected = ctgov.trial_row(parse_study(real))
    del expected["raw_json_zlib"]
    assert expected["start_date"] and expected["first_posted"]
    for written in NOT_DATES:
        crafted = json.loads(json.dumps(real))
        crafted["protocolSection"]["statusModule"]["startDateStruct"]["date"] = written
        row = ctgov.trial_row(parse_study(crafted))
        raw = json.loads(zlib.decompress(row.pop("raw_json_zlib")))
        assert raw["protocolSection"]["statusModule"]["startDateStruct"]["date"] == written
        assert row == {**expected, "start_date": None, "raw_sha1": row["raw_sha1"]}, written
    crafted["protocolSection"]["statusModule"]["startDateStruct"]["date"] = " 2019-05 "
    assert parse_study(crafted).start_date == "2019-05"


def test_a_page_token_given_twice_ends_the_paging_loudly():
    class RepeatingToken(CtgovStandIn):
        def answer(self, path, params):
            status, body = super().answer(path, params)
            data = json.loads(body)
            data["nextPageToken"] = "page4"  # the real first page's token, on every page
            return status, json.dumps(data).encode()

    with RepeatingToken() as server:
        client, _ = client_for(server, page_size=4)
        with pytest.raises(CtgovError, match=r"page 2: ClinicalTrials.gov gave the page token 'page4' a second time"):
            list(client.iter_pages(trials_query_params()))
        assert len(server.requests) == 2
