"""The evidence map page: `/-/evidence-map`, and the same matrix as `.csv` and `.json`.

Rows are what a clinician asks (population x molecule, or outcome, or theme: `?axis=`), columns
evidence levels, each cell the number of current records that answer it, linking to exactly
those records in the articles table (`/catalog/articles?...` with the catalog's own filters,
so its facets and exports work on them). Filters: `?kind=` (`peer_reviewed`, the default: the
PubMed records; `preprint`: the preprints not yet published as a catalog record, each cell
linking to exactly those in the preprints table, `/catalog/preprints?...`), `?route=`,
`?comparator=`, `?from=` and `?to=` (publication years); `?row=` shows one row, to share it.
Works without JavaScript (a table).

What the rows, levels and filters are, and the SQL and table arguments of each, come from the
catalog itself (`evidence_map_definition`, written by harvest/evidence_map.py with its counts),
so a published copy needs nothing but this file. Counts of peer-reviewed records come from
`evidence_map_counts` while the summaries are current (`summary_state.stale` = 0) and are counted
live otherwise; preprints (thousands at most) are always counted live, by index.
Must never: write to the database, or count differently from the list a cell links to.
"""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import urlencode

from datasette import hookimpl
from datasette.utils.asgi import Response

DATABASE = "catalog"
PATH = "/-/evidence-map"
PARAMS = ("axis", "row", "kind", "route", "comparator", "from", "to")
# Which records a map counts. No "all" (peer-reviewed records and unpublished preprints as works):
# its cells could not each link to the one list they count. Both kinds are listed together only
# in `catalog_records`, a view without tags or designs whose record_id is a PMID cast to text, so
# a tag or level filter on it would read every current article (a million rows at scale) for each
# cell; two links per cell would not be "exactly the list it counts".
KINDS = {"peer_reviewed": "Peer-reviewed (PubMed)", "preprint": "Preprints not yet published (Europe PMC)"}
DEFAULT_KIND = "peer_reviewed"


class BadRequest(ValueError):
    """A query-string value the map does not know: answered 400 with this one line."""


async def load_definition(db) -> dict | None:
    try:
        rows = await db.execute("select definition from evidence_map_definition where id = 1")
    except Exception:  # noqa: BLE001 - a catalog from before the evidence map
        return None
    return json.loads(rows.rows[0][0]) if rows.rows else None


async def summaries_current(db) -> bool:
    try:
        rows = await db.execute("select stale from summary_state where id = 1")
    except Exception:  # noqa: BLE001
        return False
    return bool(rows.rows) and rows.rows[0][0] == 0


def _year(args, name: str) -> int | None:
    text = (args.get(name) or "").strip()
    if not text:
        return None
    if not text.isdecimal() or len(text) != 4:
        raise BadRequest(f"{name}={text!r} is not a year: give four digits, e.g. {name}=2019")
    return int(text)


def read_choices(args, spec: dict) -> dict:
    """The page's choices from its query string, each checked against the definition."""
    axes = {a["key"]: a for a in spec["axes"]}
    axis = (args.get("axis") or "").strip() or spec["axes"][0]["key"]
    if axis not in axes:
        raise BadRequest(f"axis={axis!r} is not one of the map's rows: choose {', '.join(axes)}")
    choices = {"axis": axis, "row": None}
    kind = (args.get("kind") or "").strip() or DEFAULT_KIND
    if kind not in KINDS:
        raise BadRequest(f"kind={kind!r} is not a kind of record the map counts: choose {', '.join(KINDS)}")
    choices["kind"] = kind
    for f in spec["filters"]:
        value = (args.get(f["key"]) or "").strip()
        known = [v["key"] for v in f["values"]]
        if value and value not in known:
            raise BadRequest(f"{f['key']}={value!r} is not a {f['key']} the catalog tags: choose {', '.join(known)}")
        choices[f["key"]] = value
    choices["from"], choices["to"] = _year(args, "from"), _year(args, "to")
    if choices["from"] and choices["to"] and choices["from"] > choices["to"]:
        raise BadRequest(f"from={choices['from']} is after to={choices['to']}: the years are the wrong way round")
    row = (args.get("row") or "").strip()
    if row:
        if row not in {r["key"] for r in axes[axis]["rows"]}:
            raise BadRequest(f"row={row!r} is not a row of the {axes[axis]['label'].lower()} map")
        choices["row"] = row
    return choices


async def count_cells(db, spec: dict, choices: dict) -> tuple[dict, bool]:
    """{(row, level): records} and whether the summaries answered."""
    if choices["kind"] == "preprint":
        return await count_preprint_cells(db, spec, choices), False
    params = {
        "axis": choices["axis"],
        "route": choices["route"],
        "comparator": choices["comparator"],
        "from": choices["from"],
        "to": choices["to"],
    }
    years = "".join((" and {col} >= :from" if choices["from"] else "") + (" and {col} <= :to" if choices["to"] else ""))
    if await summaries_current(db):
        sql = (
            "select row, level, sum(count) from evidence_map_counts where axis = :axis and route = :route "
            "and comparator = :comparator" + years.format(col="pub_year") + " group by row, level"
        )
        summarised = True
    else:
        axis = next(a for a in spec["axes"] if a["key"] == choices["axis"])
        where = spec["scope_sql"] + years.format(col="a.pub_year")
        for f in spec["filters"]:
            if choices[f["key"]]:
                where += (
                    f" and a.pmid in (select pmid from article_tags where facet = '{f['key']}' and value = :{f['key']})"
                )
        sql = (
            f"select r.row, {spec['level_sql']} as level, count(*) from ({axis['pairs_sql']}) r "
            f"join articles a on a.pmid = r.pmid where {where} and level is not null group by r.row, level"
        )
        summarised = False
    rows = await db.execute(sql, params)
    return {(row, level): n for row, level, n in rows.rows}, summarised


def preprint_count_sql(spec: dict, choices: dict) -> str:
    """The live count of preprint cells: by the tags' (facet, value) index, then each preprint,
    its tags and its published version (if any) by primary key; never a scan of `articles`."""
    pre = spec["preprints"]
    where = pre["scope_sql"]
    where += " and p.pub_year >= :from" if choices["from"] else ""
    where += " and p.pub_year <= :to" if choices["to"] else ""
    for f in spec["filters"]:
        if choices[f["key"]]:
            where += f" and p.ppr_id in (select ppr_id from preprint_tags where facet = '{f['key']}' and value = :{f['key']})"
    return (
        f"select r.row, {pre['level_sql']} as level, count(*) from ({pre['pairs_sql'][choices['axis']]}) r "
        f"join (select p.ppr_id, {pre['design_sql']} as design from preprints p where {where}) w "
        "on w.ppr_id = r.ppr_id where level is not null group by r.row, level"
    )


async def count_preprint_cells(db, spec: dict, choices: dict) -> dict:
    params = {k: choices[k] for k in ("route", "comparator", "from", "to")}
    rows = await db.execute(preprint_count_sql(spec, choices), params)
    return {(row, level): n for row, level, n in rows.rows}


def map_url(datasette, choices: dict, fmt: str = "", **changes) -> str:
    merged = {**choices, **changes}
    if merged.get("kind") == DEFAULT_KIND:  # the map's URLs from before kinds stay as they were
        merged["kind"] = None
    query = {k: merged[k] for k in PARAMS if merged.get(k) not in (None, "")}
    return datasette.urls.path(PATH + fmt) + (("?" + urlencode(query)) if query else "")


def build_matrix(datasette, spec: dict, choices: dict, counts: dict) -> dict:
    preprints = spec["preprints"] if choices["kind"] == "preprint" else None
    table = datasette.urls.table(DATABASE, preprints["table"] if preprints else "articles")
    scope_args = preprints["scope_args"] if preprints else spec["scope_args"]
    narrowing = [f"{f['arg']}={choices[f['key']]}" for f in spec["filters"] if choices[f["key"]]]
    if choices["from"]:
        narrowing.append(f"pub_year__gte={choices['from']}")
    if choices["to"]:
        narrowing.append(f"pub_year__lte={choices['to']}")
    axis = next(a for a in spec["axes"] if a["key"] == choices["axis"])
    rows = []
    for row in axis["rows"]:
        if choices["row"] and row["key"] != choices["row"]:
            continue
        cells = []
        for level in spec["levels"]:
            level_args = preprints["levels"][level["key"]] if preprints else level["args"]
            args = "&".join([scope_args, row["args"], level_args, *narrowing])
            cells.append(
                {
                    "level": level["key"],
                    "level_label": level["label"],
                    "count": counts.get((row["key"], level["key"]), 0),
                    "url": f"{table}?{args}",
                    "id": f"cell-{row['key'].replace('|', '-')}-{level['key']}",
                }
            )
        rows.append(
            {
                "key": row["key"],
                "label": row["label"],
                "cells": cells,
                "url": map_url(datasette, choices, row=row["key"]),
                "total": sum(c["count"] for c in cells),
            }
        )
    return {"axis": axis, "rows": rows}


def _described(spec: dict, choices: dict) -> str:
    parts = ["preprints not yet published"] if choices["kind"] == "preprint" else []
    for f in spec["filters"]:
        if choices[f["key"]]:
            parts.append(f"{f['key']} {next(v['label'] for v in f['values'] if v['key'] == choices[f['key']])}")
    if choices["from"] or choices["to"]:
        parts.append(f"published {choices['from'] or '…'}–{choices['to'] or '…'}")
    return ", ".join(parts)


async def evidence_map(datasette, request):
    fmt = request.url_vars.get("format") or ""
    if DATABASE not in datasette.databases:
        return _error(fmt, 404, "this server holds no catalog")
    db = datasette.get_database(DATABASE)
    spec = await load_definition(db)
    if spec is None:
        return _error(
            fmt,
            404,
            "this catalog predates the evidence map: run a harvest or `python -m harvest retag` once to count it",
        )
    try:
        choices = read_choices(request.args, spec)
    except BadRequest as exc:
        return _error(fmt, 400, str(exc))
    if choices["kind"] == "preprint" and "preprints" not in spec:
        return _error(
            fmt,
            404,
            "this catalog's map predates preprints: run a harvest or `python -m harvest retag` once to count them",
        )
    counts, summarised = await count_cells(db, spec, choices)
    matrix = build_matrix(datasette, spec, choices, counts)
    levels = spec["levels"]
    if fmt == ".json":
        return Response.json(
            {
                "axis": choices["axis"],
                "row": choices["row"],
                "filters": {k: choices[k] for k in ("kind", "route", "comparator", "from", "to")},
                "levels": [{"key": lv["key"], "label": lv["label"], "designs": lv["designs"]} for lv in levels],
                "rows": [
                    {
                        "key": r["key"],
                        "label": r["label"],
                        "url": r["url"],
                        "cells": [{"level": c["level"], "count": c["count"], "url": c["url"]} for c in r["cells"]],
                    }
                    for r in matrix["rows"]
                ],
                "counted_from": "summaries" if summarised else "live",
            }
        )
    if fmt == ".csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["row", matrix["axis"]["label"], *(lv["label"] for lv in levels)])
        for r in matrix["rows"]:
            writer.writerow([r["key"], r["label"], *(c["count"] for c in r["cells"])])
        return Response(
            out.getvalue(),
            content_type="text/csv; charset=utf-8",
            headers={
                "content-disposition": 'attachment; filename="evidence-map-{}{}.csv"'.format(
                    choices["axis"], "-preprints" if choices["kind"] == "preprint" else ""
                )
            },
        )
    context = {
        "spec": spec,
        "choices": choices,
        "matrix": matrix,
        "levels": levels,
        "described": _described(spec, choices),
        "csv_url": map_url(datasette, choices, ".csv"),
        "json_url": map_url(datasette, choices, ".json"),
        "all_rows_url": map_url(datasette, choices, row=None),
        "axis_urls": [
            {"key": a["key"], "label": a["label"], "url": map_url(datasette, choices, axis=a["key"], row=None)}
            for a in spec["axes"]
        ],
        "summarised": summarised,
        "kinds": KINDS if "preprints" in spec else {},
    }
    return Response.html(await datasette.render_template("evidence_map.html", context, request=request))


def _error(fmt: str, status: int, message: str) -> Response:
    if fmt == ".json":
        return Response.json({"ok": False, "error": message}, status=status)
    return Response.text(f"Evidence map: {message}\n", status=status)


@hookimpl
def register_routes():
    return [(r"^/-/evidence-map(?P<format>\.csv|\.json)?$", evidence_map)]
