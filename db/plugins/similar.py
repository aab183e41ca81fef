"""The article page's "Similar articles": each record's neighbours from `similar_articles`.

Owns only the template variable `similar` of row-catalog-articles.html: up to ten stored
articles, best first, each with its title, year, design and the shared terms that made it
similar (computed by harvest/similar.py at the end of every harvest, import and retag).
Must never: compute similarity while serving, or write to the catalog.
"""

from __future__ import annotations

from datasette import hookimpl

DATABASE = "catalog"

SIMILAR_SQL = """
select s.rank, s.similar_pmid, s.score, s.shared_terms, a.title, a.pub_year,
       coalesce(a.study_design, 'other') as study_design
from similar_articles s join articles a on a.pmid = s.similar_pmid
where s.pmid = ? order by s.rank
"""


async def similar_articles(datasette, pmid: int) -> list[dict]:
    db = datasette.get_database(DATABASE)
    if not await db.table_exists("similar_articles"):
        return []  # a catalog made before migration 0012: the page shows no section
    rows = (await db.execute(SIMILAR_SQL, [pmid])).rows
    return [{**dict(row), "shared": [t for t in (row["shared_terms"] or "").split("; ") if t]} for row in rows]


@hookimpl
def extra_template_vars(template, database, request, datasette):
    if template != "row-catalog-articles.html" or database != DATABASE:
        return {}

    async def inner():
        try:
            pmid = int(request.url_vars["pks"])
        except (KeyError, ValueError, TypeError):
            return {}
        return {"similar": await similar_articles(datasette, pmid)}

    return inner
