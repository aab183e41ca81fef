"""The catalog's registered trials (ClinicalTrials.gov): the trial page, the trials table's
facets, the trials on the article page and the front page, and the trial-events feed's entries.

Owns, for `datasette db/`:
* the template variables of row-catalog-trials.html (`trial`), of row-catalog-articles.html
  (`article_trials`: the record's trials with their status and phase), of the trials table
  (`trial_label`) and of index.html (`trials_summary`: how many trials, how many completed
  without a paper, counted by the very question the front page links to);
* the facets of `trials` (`{trial: NAME}` in metadata.yml): columns (status, results on the
  registry, sponsor class, how the trial was found) and one-to-many values (phase, molecule,
  route, linked results paper) with their `?_phase=PHASE2`-style filters, counted live over the
  page's rows (a catalog holds hundreds of trials, not the articles' hundreds of thousands);
* links from an NCT id in a question's rows to its trial page;
* the SQL function `trial_event_html()`, the Atom entries of feed_trial_events.
Reads `trial_papers` (migration 0013) for what links a paper to a trial. Everything a registry
record holds is text here: escaped, never markup. Links go to the catalog's own pages, PubMed and
ClinicalTrials.gov only.
Must never: write to the catalog, or load anything from another host.
"""

from __future__ import annotations

import json
import re
import zlib

from datasette import hookimpl
from datasette.database import QueryInterrupted
from datasette.facets import Facet
from datasette.filters import FilterArguments
from datasette.utils import path_with_added_args, path_with_removed_args
from markupsafe import Markup

DATABASE = "catalog"
REGISTRY_STUDY = "https://clinicaltrials.gov/study/{}"
PUBMED = "https://pubmed.ncbi.nlm.nih.gov/{}/"
_NCT_ID = re.compile(r"NCT\d{8}")
# The question the front page's "completed without a paper" count comes from.
WATCH_QUESTION = "trials_completed_without_paper"
WATCH_MONTHS = 12

# -- words for the registry's codes ------------------------------------------------------------

STATUS_LABELS = {
    "ACTIVE_NOT_RECRUITING": "Active, not recruiting",
    "COMPLETED": "Completed",
    "ENROLLING_BY_INVITATION": "Enrolling by invitation",
    "NOT_YET_RECRUITING": "Not yet recruiting",
    "RECRUITING": "Recruiting",
    "SUSPENDED": "Suspended",
    "TERMINATED": "Terminated",
    "WITHDRAWN": "Withdrawn",
    "AVAILABLE": "Available (expanded access)",
    "NO_LONGER_AVAILABLE": "No longer available",
    "TEMPORARILY_NOT_AVAILABLE": "Temporarily not available",
    "APPROVED_FOR_MARKETING": "Approved for marketing",
    "WITHHELD": "Withheld",
    "UNKNOWN": "Unknown status",
}
ONGOING = ("RECRUITING", "NOT_YET_RECRUITING", "ACTIVE_NOT_RECRUITING", "ENROLLING_BY_INVITATION")
PHASE_LABELS = {
    "EARLY_PHASE1": "Early phase 1",
    "PHASE1": "Phase 1",
    "PHASE2": "Phase 2",
    "PHASE3": "Phase 3",
    "PHASE4": "Phase 4",
    "NA": "Not applicable",
}
SPONSOR_CLASS_LABELS = {
    "INDUSTRY": "Industry",
    "NIH": "NIH",
    "FED": "US federal (not NIH)",
    "OTHER_GOV": "Other government",
    "INDIV": "Individual",
    "NETWORK": "Network",
    "AMBIG": "Ambiguous",
    "OTHER": "Other (universities, hospitals, foundations)",
    "UNKNOWN": "Unknown",
}
DATE_TYPE_LABELS = {"ACTUAL": "actual", "ESTIMATED": "anticipated"}
ENROLLMENT_TYPE_LABELS = {"ACTUAL": "actual", "ESTIMATED": "estimated"}
# How a paper is linked to a trial (trial_registrations.source).
LINK_LABELS = {
    "databank": "the paper cites it (NLM's databank list)",
    "abstract": "the paper cites it (in its title or abstract)",
    "registry_reference:RESULT": "the registry lists it as a results publication",
    "registry_reference:DERIVED": "the registry lists it (derived: NLM found the trial's id in it)",
    "registry_reference:BACKGROUND": "the registry cites it as background (not a report of this trial)",
}
EVENT_LABELS = {
    "status_changed": "Status changed",
    "results_posted": "Results posted",
    "completion_date_moved": "Completion date moved",
    "enrollment_changed": "Enrollment changed",
}
IN_TOPIC_LABELS = {1: "found by the topic search", 0: "cited by a catalog record only"}
RESULTS_LABELS = {1: "results posted on the registry", 0: "no results on the registry"}
RESULTS_PAPER_LABELS = {"yes": "has a linked results paper", "no": "no linked results paper"}


def trial_label(kind: str, value) -> str:
    """How a reader reads a stored registry value: status "ACTIVE_NOT_RECRUITING" ->
    "Active, not recruiting", phases "PHASE2, PHASE3" -> "Phase 2, Phase 3"."""
    if value is None or value == "":
        return "-"
    if kind in ("status", "overall_status"):
        return STATUS_LABELS.get(value, str(value).replace("_", " ").capitalize())
    if kind in ("phase", "phases"):
        return ", ".join(PHASE_LABELS.get(p.strip(), p.strip()) for p in str(value).split(","))
    if kind in ("sponsor_class", "lead_sponsor_class"):
        return SPONSOR_CLASS_LABELS.get(value, str(value))
    if kind == "date_type":
        return DATE_TYPE_LABELS.get(value, str(value).lower())
    if kind == "enrollment_type":
        return ENROLLMENT_TYPE_LABELS.get(value, str(value).lower())
    if kind == "has_results":
        return RESULTS_LABELS.get(_int(value), str(value))
    if kind == "in_topic":
        return IN_TOPIC_LABELS.get(_int(value), str(value))
    if kind == "results_paper":
        return RESULTS_PAPER_LABELS.get(value, str(value))
    if kind == "link":
        return LINK_LABELS.get(value, str(value))
    if kind == "event":
        return EVENT_LABELS.get(value, str(value).replace("_", " "))
    if kind in ("molecule", "route"):
        return str(value).replace("_", " ")
    return str(value)


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


# -- facets -----------------------------------------------------------------------------------


def split_list(table: str, column: str) -> str:
    """SQL of (nct_id, value) for each value of a ", "-joined list column."""
    return f"""with recursive parts(nct_id, value, rest) as (
        select nct_id, '', [{column}] || ', ' from [{table}] where coalesce([{column}], '') != ''
        union all
        select nct_id, substr(rest, 1, instr(rest, ', ') - 1), substr(rest, instr(rest, ', ') + 2)
        from parts where rest != '')
      select distinct nct_id, trim(value) as value from parts where trim(value) != ''"""


# name -> label and either `column` (a column of trials, filtered as ?column=value) or `pairs`
# (SQL of (nct_id, value), filtered as ?_name=value).
TRIAL_FACETS = {
    "status": {"label": "Status", "column": "overall_status"},
    "phase": {"label": "Phase", "pairs": split_list("trials", "phases")},
    "molecule": {"label": "Molecule", "pairs": split_list("trial_interventions", "molecules")},
    "route": {"label": "Route", "pairs": split_list("trial_interventions", "routes")},
    "has_results": {"label": "Results on the registry", "column": "has_results"},
    "results_paper": {
        "label": "Linked results paper",
        "pairs": """
        select t.nct_id, case when exists (select 1 from trial_papers p where p.nct_id = t.nct_id
                                           and p.results_paper) then 'yes' else 'no' end as value
        from trials t""",
    },
    "sponsor_class": {"label": "Sponsor class", "column": "lead_sponsor_class"},
    "in_topic": {"label": "How it was found", "column": "in_topic"},
}


def _catalog_db(datasette):
    return datasette.get_database(DATABASE) if DATABASE in datasette.databases else None


async def _has_trials_tables(db) -> bool:
    if db is None or not await db.table_exists("trials"):
        return False
    return "trial_papers" in await db.view_names()


@hookimpl
def filters_from_request(request, database, table, datasette):
    """`?_phase=PHASE3&_molecule=esketamine`: trials having every value asked for."""
    if database != DATABASE or table != "trials":
        return None

    async def inner():
        where, params, described = [], {}, []
        for name, facet in TRIAL_FACETS.items():
            if "pairs" not in facet:
                continue
            for i, value in enumerate(request.args.getlist(f"_{name}")):
                param = f"trial_{name}_{i}"
                where.append(f"nct_id in (select nct_id from ({facet['pairs']}) where value = :{param})")
                params[param] = value
                described.append(f'{facet["label"].lower()} is "{trial_label(name, value)}"')
        return FilterArguments(where, params, described)

    return inner


class TrialFacet(Facet):
    """Counts of a facet of `trials` over the rows the table page shows."""

    type = "trial"

    async def suggest(self):
        return []

    async def facet_results(self):
        results: list[dict] = []
        timed_out: list[str] = []
        if self.database != DATABASE or self.table != "trials":
            return results, timed_out
        size = self.get_facet_size()
        selected_pairs = self.get_querystring_pairs()
        for source_and_config in self.get_configs():
            config = source_and_config["config"]
            name = config.get("simple") or config.get("name")
            facet = TRIAL_FACETS.get(name)
            if facet is None:
                continue
            if "column" in facet:
                arg = facet["column"]
                sql = f"""select [{arg}] as value, count(*) as count from ({self.sql})
                          where [{arg}] is not null group by [{arg}] order by count desc, value limit {size + 1}"""
            else:
                arg = f"_{name}"
                sql = f"""select v.value as value, count(distinct v.nct_id) as count
                          from (select nct_id from ({self.sql})) page join ({facet["pairs"]}) v on v.nct_id = page.nct_id
                          group by v.value order by count desc, v.value limit {size + 1}"""
            try:
                rows = (
                    await self.ds.execute(
                        self.database,
                        sql,
                        self.params,
                        truncate=False,
                        custom_time_limit=self.ds.setting("facet_time_limit_ms"),
                    )
                ).rows
            except QueryInterrupted:
                timed_out.append(name)
                continue
            values = []
            for row in rows[:size]:
                value = row["value"]
                selected = (arg, str(value)) in selected_pairs
                path = (
                    path_with_removed_args(self.request, {arg: str(value)})
                    if selected
                    else path_with_added_args(self.request, {arg: value, "_next": None})
                )
                values.append(
                    {
                        "value": value,
                        "label": trial_label(name, value),
                        "count": row["count"],
                        "toggle_url": self.ds.absolute_url(self.request, self.ds.urls.path(path)),
                        "selected": selected,
                    }
                )
            results.append(
                {
                    "name": name,
                    "label": facet["label"],
                    "type": self.type,
                    "hideable": source_and_config["source"] != "metadata",
                    "toggle_url": self.ds.urls.path(path_with_removed_args(self.request, {"_facet_trial": name})),
                    "results": values,
                    "truncated": len(rows) > size,
                }
            )
        return results, timed_out


@hookimpl
def register_facet_classes():
    return [TrialFacet]


# -- cells and feed entries -------------------------------------------------------------------


@hookimpl
def render_cell(value, column, table, database, datasette):
    """An NCT id in a question's rows opens its trial page (tables link their keys themselves)."""
    if database != DATABASE or table is not None or column != "nct_id" or not isinstance(value, str):
        return None
    if not _NCT_ID.fullmatch(value):
        return None
    return Markup('<a href="{}">{}</a>').format(datasette.urls.row(DATABASE, "trials", value), value)


@hookimpl
def prepare_connection(conn):
    conn.create_function("trial_event_html", 7, trial_event_html, deterministic=True)


def trial_event_html(nct_id, event, detail, title, status, phases, sponsor) -> str:
    """A trial event's feed entry (the SQL function feed_trial_events calls): the registry's text
    escaped, never its markup, and only our own links: the trial's page in the catalog
    (relative; the feed makes it absolute) and its ClinicalTrials.gov record."""
    nct = str(nct_id or "")
    parts = [
        Markup("<p><strong>{}</strong>{}</p>").format(
            trial_label("event", event), Markup(": {}").format(detail) if detail else ""
        )
    ]
    if title:
        parts.append(Markup("<p>{}</p>").format(title))
    facts = [trial_label("status", status)]
    if phases:
        facts.append(trial_label("phases", phases))
    if sponsor:
        facts.append(str(sponsor))
    parts.append(Markup("<p>{}</p>").format(" · ".join(facts)))
    if _NCT_ID.fullmatch(nct):
        parts.append(
            Markup(
                '<p><a href="/catalog/trials/{}">Open in the catalog</a> · '
                '<a href="{}">{} on ClinicalTrials.gov</a></p>'
            ).format(nct, REGISTRY_STUDY.format(nct), nct)
        )
    return str(Markup("").join(parts))


# -- the trial page ---------------------------------------------------------------------------


def registry_url(trial_id: str) -> str:
    """The registry's page of a registration number (as the catalog's trial_url does)."""
    from urllib.parse import quote

    trial_id = (trial_id or "").strip()
    if trial_id.upper().startswith("NCT"):
        return REGISTRY_STUDY.format(quote(trial_id.upper()))
    if trial_id.upper().startswith("ISRCTN"):
        return f"https://www.isrctn.com/{quote(trial_id.upper())}"
    return f"https://trialsearch.who.int/Trial2.aspx?TrialID={quote(trial_id)}"


def _arms(raw: bytes | None) -> tuple[list[dict], dict[str, str]]:
    """The arms of the stored study (label, type, description, interventions) and each
    intervention's description, from the JSON the registry sent."""
    if not raw:
        return [], {}
    try:
        study = json.loads(zlib.decompress(raw))
    except (zlib.error, ValueError):
        return [], {}
    module = (
        ((study.get("protocolSection") or {}).get("armsInterventionsModule") or {}) if isinstance(study, dict) else {}
    )
    arms = []
    for arm in module.get("armGroups") or []:
        if isinstance(arm, dict) and arm.get("label"):
            arms.append(
                {
                    "label": str(arm["label"]),
                    "type": str(arm.get("type") or "").replace("_", " ").lower(),
                    "description": arm.get("description"),
                    "interventions": [str(n) for n in arm.get("interventionNames") or []],
                }
            )
    described = {
        str(i.get("name")): str(i["description"])
        for i in module.get("interventions") or []
        if isinstance(i, dict) and i.get("name") and i.get("description")
    }
    return arms, described


def _dates(t: dict) -> list[dict]:
    out = []
    for label, column in (
        ("Start", "start_date"),
        ("Primary completion", "primary_completion_date"),
        ("Completion", "completion_date"),
    ):
        if t.get(column):
            kind = t.get(f"{column}_type")
            out.append({"label": label, "date": t[column], "type": trial_label("date_type", kind) if kind else None})
    return out


def group_papers(rows: list[dict]) -> list[dict]:
    """trial_papers rows (one per way a paper is linked) as one entry per paper, with every way."""
    papers: dict[int, dict] = {}
    for row in rows:
        paper = papers.setdefault(row["pmid"], {**row, "ways": [], "results_paper": 0})
        paper["ways"].append(trial_label("link", row["source"]))
        paper["results_paper"] = paper["results_paper"] or row["results_paper"]
    return sorted(papers.values(), key=lambda p: (not p["in_catalog"], -(p["pub_year"] or 0), p["pmid"]))


async def trial_page_vars(datasette, request) -> dict:
    db = _catalog_db(datasette)
    nct = request.url_vars.get("pks") if request else None
    if not nct or not await _has_trials_tables(db):
        return {}
    rows = (await db.execute("select * from trials where nct_id = ?", [nct])).rows
    if not rows:
        return {}
    row = dict(rows[0])
    raw = row.pop("raw_json_zlib", None)
    arms, described = _arms(raw)

    async def many(sql):
        return [dict(r) for r in (await db.execute(sql, [nct])).rows]

    interventions = await many(
        "select type, name, molecules, routes from trial_interventions where nct_id = ? order by position"
    )
    for i in interventions:
        i["description"] = described.get(i["name"])
    outcomes = await many("select kind, measure, time_frame from trial_outcomes where nct_id = ? order by position")
    papers = group_papers(
        await many("""
        select pmid, source, in_catalog, title, first_author, journal, pub_year, study_design, results_paper
        from trial_papers where nct_id = ? order by pmid, source""")
    )
    return {
        "trial": {
            "row": row,
            "url": REGISTRY_STUDY.format(row["nct_id"]),
            "status": trial_label("status", row["overall_status"]),
            "ongoing": row["overall_status"] in ONGOING,
            "phases": trial_label("phases", row["phases"]) if row["phases"] else None,
            "sponsor_class": trial_label("sponsor_class", row["lead_sponsor_class"])
            if row["lead_sponsor_class"]
            else None,
            "enrollment_type": trial_label("enrollment_type", row["enrollment_type"])
            if row["enrollment_type"]
            else None,
            "dates": _dates(row),
            "arms": arms,
            "interventions": interventions,
            "conditions": [
                r["condition"]
                for r in await many("select condition from trial_conditions where nct_id = ? order by position")
            ],
            "primary_outcomes": [o for o in outcomes if o["kind"] == "primary"],
            "other_outcomes": len([o for o in outcomes if o["kind"] != "primary"]),
            "papers": papers,
            "gaps": [p for p in papers if not p["in_catalog"]],
            "results_papers": [p for p in papers if p["results_paper"]],
            "events": await many(
                "select event, detail, run_id, recorded_at from trial_events where nct_id = ? order by id"
            ),
        },
        "trial_label": trial_label,
    }


# -- the article page, the trials table and the front page --------------------------------


async def article_trials(datasette, pmid: int) -> list[dict]:
    """The trials a record is linked to (either way), one entry per registration number, with
    the trial's status and phase when the catalog stores it."""
    db = _catalog_db(datasette)
    if not await _has_trials_tables(db):
        return []
    rows = (
        await db.execute(
            """
        select tr.trial_id, tr.registry, tr.source, t.nct_id is not null as stored, t.title, t.acronym,
               t.overall_status, t.phases, t.has_results, n.nct_id is not null as not_in_registry
        from trial_registrations tr
        left join trials t on t.nct_id = tr.trial_id
        left join trials_not_in_registry n on n.nct_id = tr.trial_id
        where tr.pmid = ? order by tr.trial_id, tr.source""",
            [pmid],
        )
    ).rows
    trials: dict[str, dict] = {}
    for r in rows:
        trial = trials.setdefault(
            r["trial_id"],
            {
                **dict(r),
                "ways": [],
                "status": trial_label("status", r["overall_status"]) if r["overall_status"] else None,
                "phase_label": trial_label("phases", r["phases"]) if r["phases"] else None,
                "is_nct": bool(_NCT_ID.fullmatch(r["trial_id"] or "")),
                "registry_url": registry_url(r["trial_id"]),
            },
        )
        trial["ways"].append(
            trial_label("link", r["source"])
            .replace("the paper cites it", "this record cites it")
            .replace("the registry lists it", "the registry lists this record")
            .replace("the registry cites it", "the registry cites this record")
        )
    return list(trials.values())


async def trials_summary(datasette) -> dict | None:
    """How many trials, and how many completed without a paper WATCH_MONTHS on, counted by the
    question the front page links to (so the two never disagree)."""
    db = _catalog_db(datasette)
    if not await _has_trials_tables(db):
        return None
    counts = dict(
        (
            await db.execute("""
        select count(*) as total, coalesce(sum(in_topic = 1), 0) as in_topic,
               coalesce(sum(overall_status in ('RECRUITING', 'NOT_YET_RECRUITING', 'ACTIVE_NOT_RECRUITING',
                                               'ENROLLING_BY_INVITATION')), 0) as ongoing
        from trials""")
        ).rows[0]
    )
    question = (await datasette.get_canned_queries(DATABASE, None)).get(WATCH_QUESTION)
    counts["without_paper"] = None
    if question is not None and counts["total"]:
        rows = (await db.execute(f"select count(*) from ({question['sql']})", {"months": str(WATCH_MONTHS)})).rows
        counts["without_paper"] = rows[0][0]
    last = (
        await db.execute(
            "select id, finished_at from harvest_runs where status = 'success' "
            "and source = 'trials' order by id desc limit 1"
        )
    ).rows
    counts["last_run"] = dict(last[0]) if last else None
    counts["watch_question"] = WATCH_QUESTION
    counts["watch_months"] = WATCH_MONTHS
    return counts


@hookimpl
def extra_template_vars(template, database, table, view_name, request, datasette):
    async def inner():
        if template == "row-catalog-trials.html":
            return await trial_page_vars(datasette, request)
        if template == "row-catalog-articles.html":
            try:
                pmid = int(request.url_vars["pks"])
            except (KeyError, ValueError, TypeError):
                return {}
            return {"article_trials": await article_trials(datasette, pmid), "trial_label": trial_label}
        if template == "index.html":
            return {"trials_summary": await trials_summary(datasette)}
        if view_name == "table" and database == DATABASE and table == "trials":
            return {"trial_label": trial_label}
        return {}

    return inner
