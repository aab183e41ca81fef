"""The catalog's preprints (Europe PMC): the preprint page, the preprints on the article page,
and the preprint count on the front page (the search lists preprints with the records: the
`search` query in metadata.yml).

Owns, for `datasette db/`, the template variables of row-catalog-preprints.html (`preprint`: the
record, its authors, tags and every link to a published version with how it was made and its
score, and the published record's title and journal) and of row-catalog-articles.html
(`article_preprints`: the preprints whose published version the record is, from any link), and
of index.html (`preprints_summary`: how many preprints, how many published as a catalog record);
and the preprints table's filters over their tags, as the articles table has them
(`?_population=...&_molecule=...`: preprints having every value asked for), its primary design
(`?_study_design=rct,crossover_rct`: one of these) and `?_counts_as_work=1` (0: published as a
current catalog record, as `catalog_records.counts_as_work`), so that each evidence-map cell of
preprints links to exactly the preprints it counts. Their SQL and the values they accept come from
the catalog's evidence-map definition (harvest/evidence_map.py writes it); a value it does not
know is answered 400 with one line naming it.
Everything a preprint server wrote is text here: escaped by the templates, never markup.
Must never: write to the catalog, or load anything from another host.
"""

from __future__ import annotations

import json

from datasette import hookimpl
from datasette.filters import FilterArguments
from datasette.utils.asgi import BadRequest

DATABASE = "catalog"
METHOD_LABELS = {
    "europepmc": "Europe PMC links them (the published record lists it as its preprint)",
    "doi": "the same DOI",
    "title_author_year": "the title, first author and year match",
}


async def _has_preprints(db) -> bool:
    return bool((await db.execute("select 1 from sqlite_master where name = 'preprints'")).rows)


async def preprint_page_vars(datasette, request) -> dict:
    db = datasette.get_database(DATABASE)
    ppr_id = request.url_vars.get("pks")
    rows = (await db.execute("select * from preprints where ppr_id = ?", [ppr_id])).rows
    if not rows:
        return {}
    row = dict(rows[0])
    links = [
        {**dict(r), "how": METHOD_LABELS.get(r["method"], r["method"])}
        for r in (
            await db.execute(
                "select l.pmid, l.method, l.score, l.detail, a.title, a.journal, a.pub_year, "
                "a.pmid is not null as in_catalog from preprint_links l left join articles a on a.pmid = l.pmid "
                "where l.ppr_id = ? order by l.pmid = ? desc, l.method",
                [ppr_id, row["published_pmid"]],
            )
        ).rows
    ]
    tags = [
        dict(r)
        for r in (
            await db.execute(
                "select facet, value, method, evidence from preprint_tags where ppr_id = ? order by facet, value",
                [ppr_id],
            )
        ).rows
    ]
    return {
        "preprint": {
            "row": row,
            "authors": [a for a in (row["authors"] or "").split("; ") if a],
            "links": links,
            "published": next((link for link in links if link["pmid"] == row["published_pmid"]), None),
            "tags": tags,
            "doi_url": f"https://doi.org/{row['doi']}" if row["doi"] else None,
            "europepmc_url": f"https://europepmc.org/article/PPR/{row['ppr_id']}",
        }
    }


async def article_preprints(datasette, pmid: int) -> list[dict]:
    db = datasette.get_database(DATABASE)
    if not await _has_preprints(db):
        return []
    rows = (
        await db.execute(
            "select l.ppr_id, group_concat(distinct l.method) as methods, max(l.score) as score, p.title, p.server, "
            "p.version, p.first_publication_date, p.ppr_id is not null as in_catalog "
            "from preprint_links l left join preprints p on p.ppr_id = l.ppr_id where l.pmid = ? "
            "group by l.ppr_id order by l.ppr_id",
            [pmid],
        )
    ).rows
    return [
        {**dict(r), "how": "; ".join(METHOD_LABELS.get(m, m) for m in (r["methods"] or "").split(","))} for r in rows
    ]


async def preprints_summary(datasette) -> dict | None:
    db = datasette.get_database(DATABASE)
    if not await _has_preprints(db):
        return None
    row = (
        await db.execute(
            "select count(*) as total, coalesce(sum(has_published_version), 0) as published "
            "from preprints where in_topic = 1"
        )
    ).rows[0]
    return dict(row)


# The preprints' tag facets (preprint_tags.facet), filtered as `?_<facet>=value`.
TAG_FACETS = ("design", "molecule", "route", "population", "comparator", "outcome", "theme", "depression")


async def preprint_definition(db) -> dict | None:
    """The evidence map's definition of preprints (SQL and accepted values), or None before it."""
    try:
        rows = (await db.execute("select definition from evidence_map_definition where id = 1")).rows
    except Exception:  # noqa: BLE001 - a catalog from before the evidence map
        return None
    return json.loads(rows[0][0]).get("preprints") if rows else None


def _checked(name: str, value: str, known: list[str] | None, what: str) -> str:
    if known is not None and value not in known:
        raise BadRequest(f"{name}={value!r} is not {what} the catalog tags: choose {', '.join(known)}")
    return value


def _needs(definition: dict | None, name: str) -> dict:
    if definition is None:
        raise BadRequest(
            f"{name}: this catalog predates the preprint filters: run a harvest or `python -m harvest retag` once"
        )
    return definition


@hookimpl
def filters_from_request(request, database, table, datasette):
    """`?_population=ptsd&_study_design=rct,crossover_rct&_counts_as_work=1` on the preprints table."""
    if database != DATABASE or table != "preprints":
        return None

    async def inner():
        asked = [
            k
            for k in request.args.keys()
            if k in ("_study_design", "_counts_as_work") or (k.startswith("_") and k[1:] in TAG_FACETS)
        ]
        if not asked:
            return None
        definition = await preprint_definition(datasette.get_database(DATABASE))
        tag_values = (definition or {}).get("tag_values", {})
        where, params, described = [], {}, []
        for facet in TAG_FACETS:
            for i, value in enumerate(request.args.getlist(f"_{facet}")):
                param = f"preprint_{facet}_{i}"
                _checked(f"_{facet}", value, tag_values.get(facet), f"a {facet}")
                where.append(
                    f"ppr_id in (select ppr_id from preprint_tags where facet = '{facet}' and value = :{param})"
                )
                params[param] = value
                described.append(f'{facet} is "{value.replace("_", " ")}"')
        for i, text in enumerate(request.args.getlist("_study_design")):
            design_sql = _needs(definition, "_study_design")["design_sql"]
            designs = [
                _checked("_study_design", d.strip(), tag_values.get("design"), "a design") for d in text.split(",")
            ]
            names = [f"preprint_design_{i}_{j}" for j in range(len(designs))]
            where.append(
                f"ppr_id in (select p.ppr_id from preprints p where ({design_sql}) in ({', '.join(':' + n for n in names)}))"
            )
            params.update(zip(names, designs))
            described.append("primary design is " + " or ".join(d.replace("_", " ") for d in designs))
        for text in request.args.getlist("_counts_as_work"):
            work_sql = _needs(definition, "_counts_as_work")["work_sql"]
            if text not in ("0", "1"):
                raise BadRequest(
                    f"_counts_as_work={text!r} is not 1 (not published as a catalog record) or 0 (published as one)"
                )
            where.append(
                f"ppr_id {'' if text == '1' else 'not '}in (select p.ppr_id from preprints p where {work_sql})"
            )
            described.append("not published as a catalog record" if text == "1" else "published as a catalog record")
        return FilterArguments(where, params, described)

    return inner


@hookimpl
def extra_template_vars(template, database, table, view_name, request, datasette):
    async def inner():
        if template == "row-catalog-preprints.html":
            return await preprint_page_vars(datasette, request)
        if template == "row-catalog-articles.html":
            try:
                pmid = int(request.url_vars["pks"])
            except (KeyError, ValueError, TypeError):
                return {}
            return {"article_preprints": await article_preprints(datasette, pmid)}
        if template == "index.html":
            return {"preprints_summary": await preprints_summary(datasette)}
        return {}

    return inner
