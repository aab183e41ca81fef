"""The article page's citations: OpenAlex's count, when it was read, and a small chart per year.

Owns only the template variable `citations` of row-catalog-articles.html: the record's row of
`citations` (count, OpenAlex id, date read) and its `citations_by_year` as an inline SVG bar
chart (no script; named for assistive technology, with the same numbers as a table).
Must never: ask OpenAlex while serving (the harvester reads the counts), or write to the catalog.
"""

from __future__ import annotations

import html

from datasette import hookimpl
from markupsafe import Markup

DATABASE = "catalog"


def citations_chart(pmid: int, by_year: list[tuple[int, int]]) -> Markup:
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
    title_id = f"citations-chart-{pmid}"
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


async def article_citations(datasette, pmid: int) -> dict | None:
    db = datasette.get_database(DATABASE)
    if not await db.table_exists("citations"):
        return None  # a catalog made before migration 0015: the page shows no section
    rows = (await db.execute("select * from citations where pmid = ?", [pmid])).rows
    if not rows:
        return {"read": False}
    row = dict(rows[0])
    by_year = [
        (y, n)
        for y, n in (
            await db.execute("select year, count from citations_by_year where pmid = ? order by year", [pmid])
        ).rows
    ]
    return {
        "read": True,
        **row,
        "url": f"https://openalex.org/{row['openalex_id']}" if row["openalex_id"] else None,
        "read_on": (row["read_at"] or "")[:10],
        "by_year": by_year,
        "chart": citations_chart(pmid, by_year),
    }


@hookimpl
def extra_template_vars(template, database, request, datasette):
    if template != "row-catalog-articles.html" or database != DATABASE:
        return {}

    async def inner():
        try:
            pmid = int(request.url_vars["pks"])
        except (KeyError, ValueError, TypeError):
            return {}
        return {"citations": await article_citations(datasette, pmid)}

    return inner
