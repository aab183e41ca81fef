"""ClinicalTrials.gov API v2: fetch pages of studies, and parse a study into a declared record.

Owns: the registry's endpoints and parameters (`GET /studies` with `pageSize`, `pageToken`,
`countTotal`, `filter.ids`, `filter.advanced`; `GET /studies/{nctId}`), what makes an answer
usable (JSON with a `studies` list), and the pure mapping study JSON -> TrialRecord -> rows.
The HTTP itself (pace, retries, Retry-After, body cap) is harvest/http.py's.
Must never: write to the database (store.py does), or decide what a run asks for (runner.py).
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from . import json_shapes
from .config import CtgovSettings
from .http import HttpClient, HttpError, RateLimiter, RetryableResponse, Service, decode_json, user_agent
from .json_shapes import items, obj, objects, whole_number
from .query import is_nct_id

SERVICE_NAME = "ClinicalTrials.gov"
REGISTRY = "ClinicalTrials.gov"
# Pages: CTGOV_PAGE_SIZE (config.py), 100 by default: the registry allows 1,000 a page, and 100
# keeps a page of complete records (some hold a thousand sites) to a few MB.
# NCT ids per `filter.ids` request: 250 ids keep the URL near 3 KB.
IDS_PER_REQUEST = 250
# How `trial_registrations.source` names a link the registry's referencesModule makes.
REFERENCE_SOURCE_PREFIX = "registry_reference:"
REFERENCE_TYPES = ("RESULT", "DERIVED", "BACKGROUND")


class CtgovError(HttpError):
    """A request to ClinicalTrials.gov failed for good (after its retries)."""


@dataclass
class StudyPage:
    studies: list[dict]
    next_page_token: str | None
    total_count: int | None


def parse_page(body: bytes) -> StudyPage:
    """A `/studies` answer to a StudyPage; anything else is a broken answer (retried)."""
    data = decode_json(body)
    if not isinstance(data, dict) or not isinstance(data.get("studies"), list):
        raise RetryableResponse("the answer has no `studies` list")
    for study in data["studies"]:
        if not is_nct_id(_get(study, "protocolSection", "identificationModule", "nctId")):
            raise RetryableResponse("a study in the answer has no NCT id")
    total = data.get("totalCount")
    token = data.get("nextPageToken")
    return StudyPage(data["studies"], token if isinstance(token, str) and token else None, whole_number(total))


def parse_single(body: bytes) -> dict:
    data = decode_json(body)
    if not isinstance(data, dict) or not is_nct_id(_get(data, "protocolSection", "identificationModule", "nctId")):
        raise RetryableResponse("the answer is not a study")
    return data


class CtgovClient(HttpClient):
    """ClinicalTrials.gov API v2 over the shared HTTP layer, at its own pace (1 request/s)."""

    error_class = CtgovError

    def __init__(
        self,
        settings: CtgovSettings | None = None,
        *,
        limiter: RateLimiter | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = s = settings or CtgovSettings.from_env()
        service = Service.from_settings(
            s,
            name=SERVICE_NAME,
            requests_per_second=s.requests_per_second,
            user_agent=user_agent(s.tool),
            url_setting="CTGOV_API_URL",
            body_cap_setting="CTGOV_MAX_BODY_MB",
            body_cap_hint="a real page of 100 complete studies is a few MB: raise CTGOV_MAX_BODY_MB if this one is genuine",
        )
        super().__init__(service, limiter=limiter, session=session, sleep=sleep)

    def studies_page(
        self,
        params: dict[str, str],
        *,
        page_token: str | None = None,
        page_size: int | None = None,
        describe: str = "studies search",
    ) -> StudyPage:
        query = {
            **params,
            "format": "json",
            "pageSize": str(page_size or self.settings.page_size),
            "countTotal": "true",
        }
        if page_token:
            query["pageToken"] = page_token
        return self.call("studies", query, parse_page, describe=describe)

    def iter_pages(
        self, params: dict[str, str], *, page_size: int | None = None, describe: str = "studies search"
    ) -> Iterator[StudyPage]:
        """Every page of a search, following `nextPageToken`; a page that fails ends it loudly, and
        so does a token the registry already gave (the paging would never end)."""
        token = None
        seen: set[str] = set()
        number = 0
        while True:
            number += 1
            page = self.studies_page(
                params, page_token=token, page_size=page_size, describe=f"{describe}, page {number}"
            )
            yield page
            token = page.next_page_token
            if not token or not page.studies:
                return
            if token in seen:
                raise CtgovError(
                    f"{describe}, page {number}: ClinicalTrials.gov gave the page token {token[:40]!r} a "
                    "second time, so following it would never end"
                )
            seen.add(token)

    def studies_by_ids(self, nct_ids: list[str], extra: dict[str, str] | None = None) -> list[dict]:
        """The studies of these ids that the registry knows (ids it does not know are left out)."""
        found: list[dict] = []
        params = {**(extra or {}), "filter.ids": ",".join(nct_ids)}
        for page in self.iter_pages(
            params, page_size=min(1000, max(len(nct_ids), 1)), describe=f"studies by id ({len(nct_ids)} ids)"
        ):
            found.extend(page.studies)
        return found

    def study(self, nct_id: str) -> dict | None:
        """One study, or None when the registry answers 404 (it does not know the id)."""
        missing: dict = {}
        result = self.call(
            f"studies/{nct_id}",
            {"format": "json"},
            parse_single,
            describe=f"study {nct_id}",
            accept=lambda status, body: missing if status == 404 else None,
        )
        return None if result is missing else result


# -- the pure half: study JSON -> TrialRecord -> rows -------------------------------------


@dataclass
class Intervention:
    type: str | None
    name: str
    description: str | None = None


@dataclass
class Outcome:
    kind: str  # primary, secondary, other
    measure: str
    time_frame: str | None = None


@dataclass
class Reference:
    pmid: int
    type: str  # RESULT, DERIVED, BACKGROUND


@dataclass
class TrialRecord:
    nct_id: str
    title: str | None
    official_title: str | None
    acronym: str | None
    overall_status: str | None
    why_stopped: str | None
    phases: list[str]
    study_type: str | None
    allocation: str | None
    masking: str | None
    enrollment_count: int | None
    enrollment_type: str | None
    start_date: str | None
    start_date_type: str | None
    primary_completion_date: str | None
    primary_completion_date_type: str | None
    completion_date: str | None
    completion_date_type: str | None
    first_posted: str | None
    results_first_posted: str | None
    last_update_posted: str | None
    lead_sponsor: str | None
    lead_sponsor_class: str | None
    has_results: bool
    conditions: list[str] = field(default_factory=list)
    interventions: list[Intervention] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    raw: dict = field(default_factory=dict, repr=False)


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


_text = json_shapes.text


def _date(module: dict | None, name: str) -> tuple[str | None, str | None]:
    struct = obj(_get(module, name))
    return json_shapes.iso_date(struct.get("date")), _text(struct.get("type"))


def parse_study(study: dict) -> TrialRecord:
    """A study as the API v2 answers it to a TrialRecord. Pure; missing modules, and fields of
    another JSON type than the API's (`json_shapes`), give None/[]."""
    protocol = obj(study.get("protocolSection"))
    ident = obj(protocol.get("identificationModule"))
    nct_id = ident.get("nctId")
    if not is_nct_id(nct_id):
        raise ValueError(f"a study without an NCT id (nctId {str(nct_id)[:40]!r})")
    status = obj(protocol.get("statusModule"))
    design = obj(protocol.get("designModule"))
    design_info = obj(design.get("designInfo"))
    enrollment = obj(design.get("enrollmentInfo"))
    sponsor = obj(_get(protocol, "sponsorCollaboratorsModule", "leadSponsor"))
    start, start_type = _date(status, "startDateStruct")
    primary, primary_type = _date(status, "primaryCompletionDateStruct")
    completion, completion_type = _date(status, "completionDateStruct")
    outcomes_module = obj(protocol.get("outcomesModule"))
    outcomes = [
        Outcome(kind, m, _text(o.get("timeFrame")))
        for kind, key in (
            ("primary", "primaryOutcomes"),
            ("secondary", "secondaryOutcomes"),
            ("other", "otherOutcomes"),
        )
        for o in objects(outcomes_module.get(key))
        if (m := _text(o.get("measure")))
    ]
    references = []
    seen_refs: set[tuple[int, str]] = set()
    for ref in objects(_get(protocol, "referencesModule", "references")):
        pmid, kind = whole_number(ref.get("pmid"), low=1), (_text(ref.get("type")) or "").upper()
        if pmid is not None and kind in REFERENCE_TYPES and (pmid, kind) not in seen_refs:
            seen_refs.add((pmid, kind))
            references.append(Reference(pmid, kind))
    return TrialRecord(
        nct_id=nct_id,
        title=_text(ident.get("briefTitle")),
        official_title=_text(ident.get("officialTitle")),
        acronym=_text(ident.get("acronym")),
        overall_status=_text(status.get("overallStatus")),
        why_stopped=_text(status.get("whyStopped")),
        phases=[p for p in items(design.get("phases")) if isinstance(p, str) and p],
        study_type=_text(design.get("studyType")),
        allocation=_text(design_info.get("allocation")),
        masking=_text(_get(design_info, "maskingInfo", "masking")),
        enrollment_count=whole_number(enrollment.get("count")),
        enrollment_type=_text(enrollment.get("type")),
        start_date=start,
        start_date_type=start_type,
        primary_completion_date=primary,
        primary_completion_date_type=primary_type,
        completion_date=completion,
        completion_date_type=completion_type,
        first_posted=_date(status, "studyFirstPostDateStruct")[0],
        results_first_posted=_date(status, "resultsFirstPostDateStruct")[0],
        last_update_posted=_date(status, "lastUpdatePostDateStruct")[0],
        lead_sponsor=_text(sponsor.get("name")),
        lead_sponsor_class=_text(sponsor.get("class")),
        has_results=study.get("hasResults") is True or isinstance(study.get("resultsSection"), dict),
        conditions=list(
            dict.fromkeys(c for c in (_text(c) for c in items(_get(protocol, "conditionsModule", "conditions"))) if c)
        ),
        interventions=[
            Intervention(_text(i.get("type")), name, _text(i.get("description")))
            for i in objects(_get(protocol, "armsInterventionsModule", "interventions"))
            if (name := _text(i.get("name")))
        ],
        outcomes=outcomes,
        references=references,
        raw=study,
    )


def raw_json(record: TrialRecord) -> bytes:
    """The study as the registry sent it, in a stable spelling (sorted keys): equal bytes, same study."""
    return json.dumps(record.raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def trial_row(record: TrialRecord) -> dict:
    """The `trials` columns of a record (run bookkeeping is the store's)."""
    raw = raw_json(record)
    return {
        "nct_id": record.nct_id,
        "title": record.title,
        "official_title": record.official_title,
        "acronym": record.acronym,
        "overall_status": record.overall_status,
        "why_stopped": record.why_stopped,
        "phases": ", ".join(record.phases) or None,
        "study_type": record.study_type,
        "allocation": record.allocation,
        "masking": record.masking,
        "enrollment_count": record.enrollment_count,
        "enrollment_type": record.enrollment_type,
        "start_date": record.start_date,
        "start_date_type": record.start_date_type,
        "primary_completion_date": record.primary_completion_date,
        "primary_completion_date_type": record.primary_completion_date_type,
        "completion_date": record.completion_date,
        "completion_date_type": record.completion_date_type,
        "first_posted": record.first_posted,
        "results_first_posted": record.results_first_posted,
        "last_update_posted": record.last_update_posted,
        "lead_sponsor": record.lead_sponsor,
        "lead_sponsor_class": record.lead_sponsor_class,
        "has_results": int(record.has_results),
        "raw_sha1": _sha1(raw),
        "raw_json_zlib": zlib.compress(raw, 6),
    }


def _sha1(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(data).hexdigest()


def intervention_tags(intervention: Intervention) -> tuple[str | None, str | None]:
    """(molecules, routes) the paper tagger finds in an intervention's name and description."""
    from .tags import tag_article

    tags = tag_article({"title": intervention.name, "abstract": intervention.description or ""})
    molecules = sorted({t["value"] for t in tags if t["facet"] == "molecule"})
    routes = sorted({t["value"] for t in tags if t["facet"] == "route"})
    return ", ".join(molecules) or None, ", ".join(routes) or None


def child_rows(record: TrialRecord) -> dict[str, list[tuple]]:
    """Rows of the tables keyed by nct_id, as tuples in the tables' column order."""
    nct = record.nct_id
    interventions = []
    for position, i in enumerate(record.interventions, 1):
        molecules, routes = intervention_tags(i)
        interventions.append((nct, position, i.type, i.name, molecules, routes))
    return {
        "trial_interventions": interventions,
        "trial_conditions": [(nct, position, c) for position, c in enumerate(record.conditions, 1)],
        "trial_outcomes": [
            (nct, position, o.kind, o.measure, o.time_frame) for position, o in enumerate(record.outcomes, 1)
        ],
    }


def reference_links(record: TrialRecord) -> list[tuple]:
    """`trial_registrations` rows for the papers the registry record points at (pmid, registry,
    trial_id, source)."""
    return [(r.pmid, REGISTRY, record.nct_id, REFERENCE_SOURCE_PREFIX + r.type) for r in record.references]


def change_events(old: dict, new: dict) -> list[tuple[str, str | None]]:
    """What a new version of a study changed that a reader follows, from two `trials` rows."""
    events: list[tuple[str, str | None]] = []
    if old.get("overall_status") != new.get("overall_status"):
        events.append(("status_changed", f"{old.get('overall_status')} -> {new.get('overall_status')}"))
    if new.get("has_results") and not old.get("has_results"):
        events.append(("results_posted", new.get("results_first_posted")))
    for column, label in (("primary_completion_date", "primary completion"), ("completion_date", "completion")):
        if old.get(column) != new.get(column):
            events.append(("completion_date_moved", f"{label} {old.get(column)} -> {new.get(column)}"))
    if (old.get("enrollment_count"), old.get("enrollment_type")) != (
        new.get("enrollment_count"),
        new.get("enrollment_type"),
    ):
        events.append(
            (
                "enrollment_changed",
                f"{old.get('enrollment_count')} {old.get('enrollment_type') or ''}".strip()
                + f" -> {new.get('enrollment_count')} {new.get('enrollment_type') or ''}".rstrip(),
            )
        )
    return events
