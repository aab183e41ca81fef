"""The evidence map: studies counted by the question they answer and how strong their design is.

Rows are what a clinician asks, in one of three fixed lists (every row shown, also where it
counts zero: the gaps are the point): population x molecule ("treatment-resistant depression
x esketamine"), outcome, or theme. Columns are evidence levels, each a set of primary study
designs (`articles.study_design`, one per record, so a record is in one column at most).
Route, comparator and publication years narrow it. Two kinds of record are counted, one at a
time (`?kind=`): the peer-reviewed PubMed records (counted in the summaries), or the in-topic
preprints not yet published as a current catalog record (counted live: they are few), whose
level is their primary design worked out in SQL from their design tags (`PREPRINT_DESIGN_SQL`).

Owns:
* `DEFINITION`: the rows, the levels and the filters, with, for each, both the SQL that counts
  it and the articles-table arguments that list it (`/catalog/articles?...`), so that a cell's
  number and the list it links to are the same records;
* `DEFINITION["preprints"]`: the same for the preprints (their SQL over `preprints` and
  `preprint_tags`, their `/catalog/preprints?...` arguments, the tag values those accept);
* `refresh(db)`: `evidence_map_counts(axis, row, level, pub_year, route, comparator, count)`,
  the map's counts for every row, level, year, route ('' = any) and comparator ('' = any), and
  `evidence_map_definition`, the definition as JSON, so that the served catalog (the Datasette
  plugin db/plugins/evidence_map.py, or a published copy without this package) counts and links
  with exactly what was summarised. `harvest/summaries.py` calls it in its refresh: it is fresh
  exactly when the facet counts are (`summary_state.stale`).

Must never: be the only place a count exists (the rows are the truth; the plugin counts live
while the summaries are stale), or write anything but its two tables.
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import product

import sqlite_utils

from .tags import DESIGN_PRECEDENCE, FACET_VALUES, TITLE_DECLARES

# The records counted: what the topic query returns and NLM has not deleted, and, once the
# catalog knows it (column `psychiatric`), only records on depression in the psychiatric sense.
SCOPE_SQL = "a.matches_query = 1 and a.is_deleted = 0"
SCOPE_ARGS = "matches_query=1&is_deleted=0"
PSYCHIATRIC_SQL = " and a.psychiatric = 1"
PSYCHIATRIC_ARGS = "&psychiatric=1"

# Evidence levels, strongest first: (key, label, primary designs).
LEVELS = [
    ("reviews", "Systematic reviews and meta-analyses", ("systematic_review", "meta_analysis")),
    ("rcts", "Randomised trials", ("rct", "crossover_rct")),
    ("other_trials", "Other trials", ("open_label_trial", "trial_protocol")),
    ("observational", "Observational studies", ("observational_cohort", "case_control", "secondary_analysis")),
    ("case_reports", "Case reports and series", ("case_report_series",)),
    ("preclinical", "Preclinical (animal, in vitro)", ("preclinical_animal", "in_vitro")),
]

LABELS = {
    "treatment_resistant_depression": "Treatment-resistant depression",
    "major_depressive_disorder": "Major depressive disorder",
    "bipolar_depression": "Bipolar depression",
    "suicidal_ideation": "Suicidal ideation or behaviour",
    "ptsd": "PTSD",
    "perinatal_postpartum": "Perinatal or postpartum depression",
    "adolescents": "Children and adolescents",
    "older_adults": "Older adults",
    "anxious_depression": "Anxious depression",
    "substance_use_comorbidity": "Depression with substance use",
    "racemic_ketamine": "racemic ketamine",
    "esketamine": "esketamine",
    "arketamine": "arketamine",
    "hydroxynorketamine_metabolites": "hydroxynorketamine (metabolites)",
    "unspecified_ketamine": "ketamine (form not stated)",
    "intravenous": "Intravenous",
    "intranasal": "Intranasal",
    "oral": "Oral",
    "intramuscular": "Intramuscular",
    "subcutaneous": "Subcutaneous",
    "sublingual_buccal": "Sublingual or buccal",
    "placebo": "Placebo",
    "active_placebo_midazolam": "Active placebo (midazolam)",
    "ect": "Electroconvulsive therapy",
    "other_antidepressant": "Another antidepressant",
    "madrs": "MADRS",
    "hamd": "HAM-D",
    "bdi": "BDI",
    "qids": "QIDS",
    "cssrs_suicidality": "C-SSRS (suicidality)",
    "remission": "Remission",
    "response": "Response",
    "relapse": "Relapse",
    "dissociation_cadss": "Dissociation (CADSS)",
    "blood_pressure": "Blood pressure",
    "cognition": "Cognition",
    "abuse_misuse": "Abuse or misuse",
    "urological": "Urological effects",
    "mechanism": "Mechanism of action",
    "rapid_onset": "Rapid onset",
    "treatment_resistance": "Treatment resistance",
    "durability_relapse_maintenance": "Durability, relapse, maintenance",
    "safety_side_effects": "Safety and side effects",
    "misuse_abuse": "Misuse and abuse",
    "cost_access": "Cost and access",
}

# The populations a clinician asks about (animals and healthy volunteers are not patients).
POPULATIONS = tuple(p for p in FACET_VALUES["population"] if p not in ("animals", "healthy_volunteers"))

# axis -> (label, the tag facets a row is made of)
AXES = {
    "population_molecule": ("Population × molecule", ("population", "molecule")),
    "outcome": ("Outcome", ("outcome",)),
    "theme": ("Theme", ("theme",)),
}
AXIS_VALUES = {
    "population": POPULATIONS,
    "molecule": FACET_VALUES["molecule"],
    "outcome": FACET_VALUES["outcome"],
    "theme": FACET_VALUES["theme"],
}
FILTERS = {"route": FACET_VALUES["route"], "comparator": FACET_VALUES["comparator"]}
ROW_SEPARATOR = "|"


def label(value: str) -> str:
    return LABELS.get(value, value.replace("_", " "))


def _quoted(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def level_sql() -> str:
    """SQL of an article's (alias a) evidence level key, NULL when its design is in none."""
    return level_of_design_sql("a.study_design")


def row_pairs_sql(axis: str, tags: str = "article_tags", key: str = "pmid") -> str:
    """SQL giving (key, row) for every row of `axis` a record answers; rows are tag values
    joined by ROW_SEPARATOR, in AXES' facet order. `tags`/`key`: the articles' tags by PMID, or
    the preprints' (`preprint_tags`, `ppr_id`)."""
    facets = AXES[axis][1]
    aliases = [f"t{i}" for i in range(len(facets))]
    row = " || '|' || ".join(f"{t}.value" for t in aliases)
    joins = " ".join(
        f"join {tags} {t} on {t}.{key} = t0.{key} and {t}.facet = '{f}' and {t}.value in ({_quoted(AXIS_VALUES[f])})"
        for t, f in zip(aliases[1:], facets[1:])
    )
    return (
        f"select t0.{key} as {key}, {row} as row from {tags} t0 {joins} "
        f"where t0.facet = '{facets[0]}' and t0.value in ({_quoted(AXIS_VALUES[facets[0]])})"
    )


# -- preprints ----------------------------------------------------------------------------------
# A preprint counts as a work of its own unless its published version is a current catalog
# record (then that record counts, as a peer-reviewed one): the definition of
# `catalog_records.counts_as_work` (harvest/schema.py, CATALOG_RECORDS_VIEW), of preprint alias p.
# Its look-up is by the articles' primary key, so no count of preprints reads the articles.
PREPRINT_WORK_SQL = (
    "(p.published_pmid is null or not exists (select 1 from articles a where a.pmid = p.published_pmid "
    "and a.matches_query = 1 and a.is_deleted = 0))"
)
PREPRINT_SCOPE_SQL = "p.in_topic = 1 and " + PREPRINT_WORK_SQL
PREPRINT_SCOPE_ARGS = "in_topic=1&_counts_as_work=1"
# Depression in the psychiatric sense: the tag `articles.psychiatric` is made of (tags.is_psychiatric).
PREPRINT_PSYCHIATRIC_SQL = (
    " and exists (select 1 from preprint_tags d where d.ppr_id = p.ppr_id "
    "and d.facet = 'depression' and d.value = 'psychiatric')"
)
PREPRINT_PSYCHIATRIC_ARGS = "&_depression=psychiatric"


def preprint_design_sql() -> str:
    """SQL of a preprint's (alias p) primary design: `tags.primary_design` over its design tags.

    Preprints have no `study_design` column, and adding one would need a migration and a
    backfill of every stored preprint; their tags are few (thousands of preprints at most), so
    the design is worked out where it is read, from `preprint_tags` by its primary key: the tag
    of the strongest source (indexing, then what the title declares, then the other text rules
    and the model), within it the first of DESIGN_PRECEDENCE; rct becomes crossover_rct when a
    crossover tag is there too; "other" when no design tag is in DESIGN_PRECEDENCE. One place
    defines it, so the map's counts and the preprints table's `_study_design=` filter agree;
    tests/test_evidence_map_preprints.py holds it to primary_design on every stored preprint."""
    source = (
        "case when t.method in ('mesh', 'publication_type') then 0 "
        f"when t.method = 'rule:{TITLE_DECLARES}' then 1 else 2 end"
    )
    rank = "case t.value " + " ".join(f"when '{v}' then {i}" for i, v in enumerate(DESIGN_PRECEDENCE)) + " end"
    crossover = (
        "exists (select 1 from preprint_tags c where c.ppr_id = t.ppr_id and c.facet = 'design' "
        "and c.value = 'crossover_rct')"
    )
    return (
        f"coalesce((select case when t.value = 'rct' and {crossover} then 'crossover_rct' else t.value end "
        f"from preprint_tags t where t.ppr_id = p.ppr_id and t.facet = 'design' "
        f"and t.value in ({_quoted(DESIGN_PRECEDENCE)}) order by ({source}) * 100 + ({rank}) limit 1), 'other')"
    )


def level_of_design_sql(design: str) -> str:
    """SQL of the evidence level key of a design expression (evaluated once), NULL when in none."""
    whens = " ".join(f"when '{d}' then '{key}'" for key, _, designs in LEVELS for d in designs)
    return f"case {design} {whens} end"


def preprint_definition(psychiatric: bool) -> dict:
    """What the served catalog needs to count preprints and list them in `/catalog/preprints`."""
    return {
        "table": "preprints",
        "scope_sql": PREPRINT_SCOPE_SQL + (PREPRINT_PSYCHIATRIC_SQL if psychiatric else ""),
        "scope_args": PREPRINT_SCOPE_ARGS + (PREPRINT_PSYCHIATRIC_ARGS if psychiatric else ""),
        "work_sql": PREPRINT_WORK_SQL,
        "design_sql": preprint_design_sql(),
        "level_sql": level_of_design_sql("design"),
        "levels": {key: "_study_design=" + ",".join(designs) for key, _, designs in LEVELS},
        "pairs_sql": {axis: row_pairs_sql(axis, "preprint_tags", "ppr_id") for axis in AXES},
        # The values the preprints table's `_<facet>=` and `_study_design=` filters accept.
        "tag_values": {facet: list(values) for facet, values in FACET_VALUES.items()},
    }


def definition(psychiatric: bool) -> dict:
    """Everything the served catalog needs to draw, count and link the map."""
    axes = []
    for axis, (axis_label, facets) in AXES.items():
        rows = []
        for values in product(*(AXIS_VALUES[f] for f in facets)):
            key = ROW_SEPARATOR.join(values)
            text = " × ".join(label(v) for v in values)
            args = "&".join(f"_{f}={v}" for f, v in zip(facets, values))
            rows.append({"key": key, "label": text, "args": args})
        axes.append(
            {"key": axis, "label": axis_label, "facets": list(facets), "rows": rows, "pairs_sql": row_pairs_sql(axis)}
        )
    return {
        "scope_sql": SCOPE_SQL + (PSYCHIATRIC_SQL if psychiatric else ""),
        "scope_args": SCOPE_ARGS + (PSYCHIATRIC_ARGS if psychiatric else ""),
        "level_sql": level_sql(),
        "levels": [
            {"key": key, "label": text, "designs": list(designs), "args": "study_design__in=" + ",".join(designs)}
            for key, text, designs in LEVELS
        ],
        "axes": axes,
        "filters": [
            {
                "key": name,
                "label": name.capitalize(),
                "arg": f"_{name}",
                "values": [{"key": v, "label": label(v)} for v in values],
            }
            for name, values in FILTERS.items()
        ],
        "preprints": preprint_definition(psychiatric),
    }


SCHEMA = [
    """create table if not exists evidence_map_definition (
        id integer primary key check (id = 1), definition text not null)""",
    # route and comparator: '' counts every record, whatever its routes or comparators.
    """create table if not exists evidence_map_counts (
        axis text not null, row text not null, level text not null, pub_year integer,
        route text not null, comparator text not null, count integer not null)""",
    """create index if not exists idx_evidence_map_counts
        on evidence_map_counts (axis, route, comparator, pub_year)""",
]


def install(db: sqlite_utils.Database) -> None:
    for statement in SCHEMA:
        db.execute(statement)


def refresh(db: sqlite_utils.Database) -> None:
    """Recount the map (inside the caller's transaction: summaries.refresh holds one)."""
    install(db)
    conn = db.conn
    spec = definition("psychiatric" in db["articles"].columns_dict)
    conn.execute("delete from evidence_map_definition")
    conn.execute("insert into evidence_map_definition values (1, ?)", [json.dumps(spec)])
    conn.execute("delete from evidence_map_counts")
    # Grouped in SQLite by row, level, year and the record's routes and comparators (as lists),
    # then each group expanded in Python to every route and comparator it counts under, '' ("any")
    # included: the work per record is SQLite's; Python sees one line per group. The records in
    # scope with a level, and the routes and comparators of each, are listed once (temporary
    # tables keyed by PMID; the scope's columns are read from an index, not from the rows).
    extra = ", ".join(f"group_concat(case when facet = '{name}' then value end, ',') as {name}" for name in FILTERS)
    conn.execute("drop table if exists temp.evidence_map_base")
    conn.execute("drop table if exists temp.evidence_map_extra")
    conn.execute("create temp table evidence_map_base (pmid integer primary key, level text, pub_year integer)")
    conn.execute(f"""insert into temp.evidence_map_base
                     select a.pmid, {spec["level_sql"]} as level, a.pub_year from articles a
                     where {spec["scope_sql"]} and level is not null""")
    conn.execute(f"create temp table evidence_map_extra (pmid integer primary key, {', '.join(FILTERS)})")
    conn.execute(f"""insert into temp.evidence_map_extra select pmid, {extra} from article_tags
                     where facet in ({_quoted(FILTERS)}) group by pmid""")
    counts: Counter = Counter()
    try:
        for axis in spec["axes"]:
            for row, level, year, routes, comparators, n in conn.execute(f"""
                    select r.row, b.level, b.pub_year, x.route, x.comparator, count(*)
                    from ({axis["pairs_sql"]}) r join temp.evidence_map_base b on b.pmid = r.pmid
                    left join temp.evidence_map_extra x on x.pmid = r.pmid
                    group by 1, 2, 3, 4, 5"""):
                for route in ("", *(routes.split(",") if routes else ())):
                    for comparator in ("", *(comparators.split(",") if comparators else ())):
                        counts[(axis["key"], row, level, year, route, comparator)] += n
    finally:
        conn.execute("drop table if exists temp.evidence_map_base")
        conn.execute("drop table if exists temp.evidence_map_extra")
    conn.executemany(
        "insert into evidence_map_counts values (?, ?, ?, ?, ?, ?, ?)", ((*key, n) for key, n in counts.items())
    )
