"""The citations on a record's and a preprint's page: OpenAlex's count, when it was read, and a
small chart per year.

Owns only the template variable `citations` of row-catalog-articles.html and
row-catalog-preprints.html (both show it with _citations.html): the row of `citations` (a
record, by PMID) or `preprint_citations` (a preprint, by DOI) with the count, OpenAlex id and
date read, and the counts per year as an inline SVG bar chart (no script; named for assistive
technology, with the same numbers as a table).
Must never: ask OpenAlex while serving (the harvester reads the counts), or write to the catalog.
"""

from __future__ import annotations

import html

from datasette import hookimpl
from markupsafe import Markup

DATABASE = "catalog"


def citations_chart(chart_of: int | str, by_year: list[tuple[int, int]]) -> Markup:
    """Citations per year as a small SVG bar chart; every year from the first to the last
    counted is shown, a year without citations as an empty slot."""
    if not by_year:
        return Markup("")
    counts = dict(by_year)
    years = list(range(min(counts), max(counts) + 1))
    top = max(counts.values()) or 1
    width, height, left, bottom, top_pad = 360, 140, 36, 22, 14
    plot_w, plot_h = width - left - 6, height - bottom - top_pad
    bar_w = plot_w / len(years)
    title_id = f"citations-chart-{html.escape(str(chart_of))}"
    parts = [
        f'<svg class="citations-chart" role="img" aria-labelledby="{title_id}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{title_id}">Citations per year, {years[0]} to {years[-1]}: '
        + html.escape(", ".join(f"{y}: {counts.get(y, 0):,}" for y in years))
        + "</title>",
        f'<line x1="{left}" x2="{width - 6}" y1="{top_pad + plot_h}" y2="{top_pad + plot_h}" class="axis"/>',
        f'<text x="{left - 4}" y="{top_pad + 4}" text-anchor="end" class="tick">{top:,}</text>',
        f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end" class="tick">0</text>',
    ]
    label_every = max(1, round(len(years) / 6))
    for i, year in enumerate(years):
        n = counts.get(year, 0)
        x = left + i * bar_w
        h = plot_h * n / top
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top_pad + plot_h - h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
            f'height="{h:.1f}"><title>{year}: {n:,}</title></rect>'
        )
        if i % label_every == 0 or i == len(years) - 1:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - 6}" text-anchor="middle" class="tick">{year}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


# Where each kind's counts live: (counts table, per-year table, key column).
COUNT_TABLES = {
    "articles": ("citations", "citations_by_year", "pmid"),
    "preprints": ("preprint_citations", "preprint_citations_by_year", "ppr_id"),
}


async def record_citations(datasette, kind: str, key: int | str) -> dict | None:
    """`kind` "articles" (key: PMID) or "preprints" (key: PPR id); None before the tables exist
    (a catalog made before migration 0015 or 0019: the page shows no section)."""
    counts, per_year, column = COUNT_TABLES[kind]
    db = datasette.get_database(DATABASE)
    if not await db.table_exists(counts):
        return None
    rows = (await db.execute(f"select * from {counts} where {column} = ?", [key])).rows
    if not rows:
        return {"read": False}
    row = dict(rows[0])
    by_year = [
        (y, n)
        for y, n in (
            await db.execute(f"select year, count from {per_year} where {column} = ? order by year", [key])
        ).rows
    ]
    return {
        "read": True,
        **row,
        "url": f"https://openalex.org/{row['openalex_id']}" if row["openalex_id"] else None,
        "read_on": (row["read_at"] or "")[:10],
        "by_year": by_year,
        "chart": citations_chart(key, by_year),
    }


async def article_citations(datasette, pmid: int) -> dict | None:
    return await record_citations(datasette, "articles", pmid)


@hookimpl
def extra_template_vars(template, database, request, datasette):
    if database != DATABASE or template not in ("row-catalog-articles.html", "row-catalog-preprints.html"):
        return {}

    async def inner():
        key = (request.url_vars or {}).get("pks") if request is not None else None
        if key is None:
            return {}
        if template == "row-catalog-preprints.html":
            return {"citations": await record_citations(datasette, "preprints", str(key))}
        try:
            return {"citations": await article_citations(datasette, int(key))}
        except (ValueError, TypeError):
            return {}

    return inner
