"""The catalog's preprints (Europe PMC): the preprint page and the preprints on the article page.

Owns, for `datasette db/`, the template variables of row-catalog-preprints.html (`preprint`: the
record, its authors, tags and every link to a published version with how it was made and its
score, and the published record's title and journal) and of row-catalog-articles.html
(`article_preprints`: the preprints whose published version the record is, from any link).
Everything a preprint server wrote is text here: escaped by the templates, never markup.
Must never: write to the catalog, or load anything from another host.
"""

from __future__ import annotations

from datasette import hookimpl

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
        return {}

    return inner
