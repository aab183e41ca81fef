"""The catalog's Datasette plugin: what metadata and templates cannot say on their own.

Owns, for `datasette db/`:
* `fts_query(q)` and `fts_query(q, 'preprints')`, SQL functions: the search box's text as FTS5
  syntax when it parses against that index's columns, else as plain words (never a 500 for a
  stray quote or operator); `search_snippet()`, the
  search's snippets at a cost bounded per record;
* what one query may cost, on every connection: length limits, printf widths, refused
  functions, a cap on one answer's bytes; SQL typed by hand runs one request at a time;
* pages made once per state of the catalog file (ETag, 304), bidi controls kept out of pages,
  404 for a row URL with too few key values;
* the facets of `articles` (`{catalog: molecule}` in metadata): columns, and one-to-many
  relations (evidence tags, publication types, MeSH, languages, retraction/correction
  notices) with the `_molecule=...`-style filters their links use, counted from the
  harvester's summary tables where they answer for the page;
* RIS, BibTeX and CSL-JSON output renderers for any page whose rows carry a `pmid` or a
  preprint's `ppr_id` (formatting lives in harvest/export.py, shared with `python -m harvest export`);
* the template variables of the front page (counts, last harvest, the per-year chart as
  server-rendered SVG), the article page and the search page;
* security headers on every response (a Content-Security-Policy that allows this
  server's own scripts, styles and images only, no inline script but by hash), and 405 for any
  method but GET and HEAD;
* an empty-result guard for datasette-atom 0.9, which answers a 500 for a feed with no rows,
  and every feed titled with what it follows (a search's feed with its words), its links absolute;
* complete paging: every table page orders by its sort column and then its primary key
  (Datasette 0.65 does so only after the first page, and loses rows that tie);
* request checks before anything runs: 400 for a sort column or facet name that does not exist
  and for a question's parameter it cannot read (naming the parameter and the accepted forms);
  a reference-manager export of a table takes the whole list, up to max_returned_rows.
Must never: write to the database (it is served read-only), or load anything from another host.
"""

from __future__ import annotations

import asyncio
import contextvars
import html
import importlib
import importlib.util
import re
import sqlite3
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import quote

from datasette import hookimpl
from datasette.database import QueryInterrupted
from datasette.facets import Facet
from datasette.filters import FilterArguments
from datasette.utils import escape_fts, escape_sqlite, path_with_added_args, path_with_removed_args
from datasette.utils.asgi import Response
from markupsafe import Markup, escape

# The reference-manager formats are written by harvest/export.py (pure Python, no imports from
# the rest of the package), shared with `python -m harvest export`. Where it comes from, first
# found wins: the installed package (`pip install .`); the copy `make publish-build` puts beside
# this plugin in a published folder (EXPORT_COPY; `datasette package/publish --plugins-dir`
# carry it along), so that a published catalog serves RIS, BibTeX and CSL-JSON with nothing but
# Datasette and its plugins installed; the checkout this folder sits in. Loaded by path, never
# through sys.path edits; missing everywhere, the catalog refuses to start.
EXPORT_COPY = Path(__file__).resolve().parent / "harvest_export.py"
CHECKOUT_EXPORT = Path(__file__).resolve().parents[2] / "harvest" / "export.py"


def _load_export():
    if importlib.util.find_spec("harvest") is not None and importlib.util.find_spec("harvest.export") is not None:
        return importlib.import_module("harvest.export")
    for path in (EXPORT_COPY, CHECKOUT_EXPORT):
        if path.is_file():
            spec = importlib.util.spec_from_file_location("ketamine_catalog_export", path)
            assert spec is not None and spec.loader is not None, path  # a .py file always has both
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            return module
    raise ImportError(
        f"the catalog's export formats (harvest/export.py) are not installed and not at "
        f"{EXPORT_COPY}: build a published copy with `make publish-build`"
    )


export = _load_export()

DATABASE = "catalog"
# The records the topic query currently returns and that concern depression in the psychiatric
# sense (the rest stay, flagged: "respiratory depression" and the like are one facet away).
CURRENT = "matches_query=1&is_deleted=0&psychiatric=1"
# What the topic query returns but concerns depression only in another sense, or not at all.
SET_ASIDE = "matches_query=1&is_deleted=0&psychiatric=0"
PUBMED = "https://pubmed.ncbi.nlm.nih.gov/{}/"
DOI = "https://doi.org/{}"
PMC = "https://pmc.ncbi.nlm.nih.gov/articles/{}/"

# -- search -----------------------------------------------------------------------------------

FTS_COLUMNS = ("title", "abstract", "keywords", "mesh_terms")
# preprints_fts's columns: the search's second index (the merged search in metadata.yml).
PREPRINT_FTS_COLUMNS = ("title", "abstract", "authors", "keywords")
_INDEX_COLUMNS = {"articles": FTS_COLUMNS, "preprints": PREPRINT_FTS_COLUMNS}
_probe = threading.local()


def fts_syntax_ok(query: str, index: str = "articles") -> bool:
    """Does FTS5 accept `query` as search syntax against the columns of `index` ("articles"
    or "preprints")?"""
    probes = getattr(_probe, "conns", None)
    if probes is None:
        probes = _probe.conns = {}
    conn = probes.get(index)
    if conn is None:
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.execute(f"create virtual table probe using fts5({', '.join(_INDEX_COLUMNS[index])})")
        probes[index] = conn
    try:
        conn.execute("select rowid from probe where probe match ?", [query]).fetchall()
        return True
    except sqlite3.Error:
        return False


def fts_query(query, index: str = "articles") -> str:
    """What to hand MATCH for a search box's text: the text itself when it is valid FTS5
    syntax (phrases, OR, NOT, prefix*, title:word), else the words as typed, quoted.
    For the preprints' index (`fts_query(:q, 'preprints')`), a search the articles' index
    reads as syntax but this one cannot (a column only the articles have, mesh_terms:...)
    matches nothing: that column's words are not in a preprint, and searching them as plain
    words would find other things."""
    query = (str(query) if query is not None else "").strip()
    if not query:
        return '""'  # matches nothing, and does not raise
    if index not in _INDEX_COLUMNS:
        raise ValueError(f"fts_query: no full-text index {index!r}; choose {', '.join(_INDEX_COLUMNS)}")
    if fts_syntax_ok(query, index):
        return query
    if index != "articles" and fts_syntax_ok(query):
        return '""'
    return escape_fts(query) or '""'


# -- search snippets, bounded per record ------------------------------------------------------
# FTS5's snippet() scores every window around every hit against every other hit: its cost
# grows with the square of a record's hits, and one 1 MB abstract made the search page take
# 13 s and then fail (one C call: the time limit cannot interrupt it). search_snippet() reads
# at most SNIPPET_HEAD characters of each field (more than any real abstract: the longest of
# the 33,000 shared records is 14,654), marks the hits there with FTS5's highlight() (one pass)
# and picks the window in one pass: its cost is linear in SNIPPET_HEAD whatever a record holds.

SNIPPET_HEAD = 16_000
SNIPPET_TOKENS = 24
SNIPPET_MARK, SNIPPET_ELLIPSIS = "**", " … "
_OPEN, _CLOSE = "\x01", "\x02"
_TOKEN = re.compile(r"[^\W_]+")  # what FTS5's unicode61 tokenizer calls a token, near enough
# The catalog's index is FTS5 over FTS_COLUMNS with the porter tokenizer (harvest/schema.py).
FTS_TOKENIZE = "porter"


def _snippet_conn() -> sqlite3.Connection:
    conn = getattr(_probe, "snippets", None)
    if conn is None:
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.execute(f"create virtual table head using fts5({', '.join(FTS_COLUMNS)}, tokenize='{FTS_TOKENIZE}')")
        _probe.snippets = conn
    return conn


Window = tuple[int, int, int, list[re.Match[str]]]  # first token, last token + 1, token count, tokens


def _best_window(marked: str) -> tuple[int, Window] | None:
    """(score, (first token, last token + 1, token count, the tokens)) of the best window of
    SNIPPET_TOKENS tokens in text whose hits highlight() marked, or None without a hit."""
    tokens: list[re.Match[str]] = []
    hits: list[tuple[int, str]] = []  # (token index, word) of each highlighted token
    depth = 0
    position = 0
    for match in _TOKEN.finditer(marked):
        between = marked[position : match.start()]
        depth += between.count(_OPEN) - between.count(_CLOSE)
        position = match.end()
        if depth > 0:
            hits.append((len(tokens), match.group().lower()))
        tokens.append(match)
    if not hits:
        return None
    best, best_start = (-1, 0), 0
    seen: dict[str, int] = defaultdict(int)
    right = 0
    for left, (start, _) in enumerate(hits):  # windows starting at each hit, two pointers
        while right < len(hits) and hits[right][0] < start + SNIPPET_TOKENS:
            seen[hits[right][1]] += 1
            right += 1
        score = (len(seen), right - left)  # distinct words first, as FTS5 scores phrases
        if score > best:
            best, best_start = score, start
            last_hit = hits[right - 1][0]
        word = hits[left][1]
        seen[word] -= 1
        if not seen[word]:
            del seen[word]
    # Centre the hits in the window, as snippet() does.
    spare = SNIPPET_TOKENS - (last_hit - best_start + 1)
    first = max(0, min(best_start - spare // 2, len(tokens) - SNIPPET_TOKENS))
    return best[0] * 1000 + best[1], (first, min(len(tokens), first + SNIPPET_TOKENS), len(tokens), tokens)


def _cut(marked: str, window: Window) -> str:
    first, end, count, tokens = window
    begin = 0 if first == 0 else tokens[first].start()
    stop = tokens[end - 1].end()
    while begin > 0 and marked[begin - 1] == _OPEN:
        begin -= 1
    while stop < len(marked) and marked[stop] == _CLOSE:
        stop += 1
    text = marked[begin:stop]
    depth = low = 0
    for ch in text:  # a window may start or end inside a marked phrase
        depth += (ch == _OPEN) - (ch == _CLOSE)
        low = min(low, depth)
    text = _OPEN * -low + text + _CLOSE * (depth - low)
    text = text.replace(_OPEN, SNIPPET_MARK).replace(_CLOSE, SNIPPET_MARK)
    return (SNIPPET_ELLIPSIS if first > 0 else "") + text + (SNIPPET_ELLIPSIS if end < count else "")


def search_snippet(query, *fields) -> str | None:
    """A snippet of a record for a search: about SNIPPET_TOKENS tokens of the field with the
    best hits, hits between ** marks, from the first SNIPPET_HEAD characters of each field."""
    heads = [
        str(f)[:SNIPPET_HEAD].replace(_OPEN, " ").replace(_CLOSE, " ") if f is not None else None
        for f in fields[: len(FTS_COLUMNS)]
    ]
    heads += [None] * (len(FTS_COLUMNS) - len(heads))
    conn = _snippet_conn()
    try:
        conn.execute(f"insert into head (rowid, {', '.join(FTS_COLUMNS)}) values (1, ?, ?, ?, ?)", heads)
        columns = ", ".join(f"highlight(head, {i}, ?, ?)" for i in range(len(FTS_COLUMNS)))
        row = conn.execute(
            f"select {columns} from head where head match ?", [_OPEN, _CLOSE] * len(FTS_COLUMNS) + [fts_query(query)]
        ).fetchone()
    except sqlite3.Error:
        row = None
    finally:
        conn.execute("delete from head")
    best = None
    for marked in row or ():
        if marked and _OPEN in marked:
            found = _best_window(marked)
            if found and (best is None or found[0] > best[0]):  # ties: the first column (the title)
                best = (found[0], marked, found[1])
    if best is not None:
        return _cut(best[1], best[2])
    # No hit in the heads (the match lies further on): the start of the abstract, or the title.
    text = next((h for h in (heads[1], heads[0]) if h), None)
    if text is None:
        return None
    tokens = list(_TOKEN.finditer(text[: SNIPPET_TOKENS * 40]))
    if len(tokens) <= SNIPPET_TOKENS:
        return text[: SNIPPET_TOKENS * 40]
    return text[: tokens[SNIPPET_TOKENS - 1].end()] + SNIPPET_ELLIPSIS


@hookimpl
def prepare_connection(conn):
    conn.create_function("fts_query", -1, fts_query, deterministic=True)
    conn.create_function("search_snippet", -1, search_snippet, deterministic=True)
    conn.create_function("feed_entry_html", 8, feed_entry_html, deterministic=True)
    conn.create_function("preprint_entry_html", 7, preprint_entry_html, deterministic=True)


# -- facets -----------------------------------------------------------------------------------
# The facets' SQL lives in the catalog itself (table facet_sources, written by the harvester's
# harvest/summaries.py with the counts it summarises), so a published copy needs nothing else.
# Counts come from the summary tables (facet_counts, facet_pair_counts) when the page is the
# whole table or one facet value of a paired facet and the summaries are current; otherwise
# they are counted live over the page's rows.

TAG_FACETS = {"molecule", "route", "population", "comparator", "outcome", "theme", "design", "depression"}
# Values that read better as words of their own.
VALUE_LABELS = {
    ("depression", "psychiatric"): "psychiatric sense (mood disorders, suicidality)",
    ("depression", "other_sense_only"): "mentions depression only in another sense",
}

LANGUAGES = {
    "eng": "English",
    "ger": "German",
    "fre": "French",
    "spa": "Spanish",
    "ita": "Italian",
    "por": "Portuguese",
    "rus": "Russian",
    "chi": "Chinese",
    "jpn": "Japanese",
    "pol": "Polish",
    "dut": "Dutch",
    "kor": "Korean",
    "tur": "Turkish",
    "cze": "Czech",
    "swe": "Swedish",
    "nor": "Norwegian",
    "dan": "Danish",
    "fin": "Finnish",
    "hun": "Hungarian",
    "heb": "Hebrew",
    "per": "Persian",
    "ara": "Arabic",
    "gre": "Greek",
    "ukr": "Ukrainian",
    "hrv": "Croatian",
    "slv": "Slovenian",
    "srp": "Serbian",
    "rum": "Romanian",
    "bul": "Bulgarian",
    "lit": "Lithuanian",
}
# Facets listed in the order of their values (newest year first), not most frequent first.
VALUE_ORDERED_FACETS = {"pub_year"}
# Query-string arguments that change how a page looks, never which rows it holds.
NEUTRAL_ARGS = {
    "_sort",
    "_sort_desc",
    "_next",
    "_size",
    "_col",
    "_nocol",
    "_labels",
    "_nolabels",
    "_nofacet",
    "_nocount",
    "_trace",
    "_shape",
    "_json",
    "_extra",
    "_timelimit",
    "_ttl",
    "_stream",
    "_dl",
    "_nosuggest",
    "_context",
    "_view",
}


# Study designs as a researcher names them (the stored values are harvest/tags.py's DESIGNS).
DESIGN_LABELS = {
    "rct": "Randomised trial",
    "crossover_rct": "Crossover randomised trial",
    "open_label_trial": "Open-label or non-randomised trial",
    "observational_cohort": "Observational cohort",
    "case_control": "Case-control study",
    "case_report_series": "Case report or series",
    "systematic_review": "Systematic review",
    "meta_analysis": "Meta-analysis",
    "narrative_review": "Narrative review",
    "trial_protocol": "Trial protocol",
    "secondary_analysis": "Secondary analysis",
    "preclinical_animal": "Preclinical (animal)",
    "in_vitro": "In vitro",
    "guideline_consensus": "Guideline or consensus statement",
    "commentary_letter": "Commentary or letter",
    "other": "Other",
    "unclassified": "Unclassified",
}


def value_label(facet: str, value) -> str:
    """How a researcher reads a stored value: "racemic_ketamine" -> "racemic ketamine",
    design "rct" -> "Randomised trial"."""
    if value is None:
        return "-"
    if facet == "lang":
        return LANGUAGES.get(value, value)
    if facet in ("design", "study_design") and value in DESIGN_LABELS:
        return DESIGN_LABELS[value]
    if (facet, value) in VALUE_LABELS:
        return VALUE_LABELS[facet, value]
    if facet in TAG_FACETS or facet == "study_design":
        return str(value).replace("_", " ")
    return str(value)


async def facet_sources(datasette) -> dict[str, dict]:
    """name -> {label, kind ("column" or "multi"), pairs (SQL of (pmid, value)), paired}."""
    db = _catalog_db(datasette)
    if db is None:
        return {}
    try:
        rows = await db.execute("select name, label, kind, pairs, paired from facet_sources order by position")
    except Exception:  # noqa: BLE001 - a catalog from before migration 7: no such facets
        return {}
    return {row["name"]: dict(row) for row in rows}


async def summaries_current(db) -> bool:
    """True when the harvester's summary tables answer for the rows as they are now."""
    try:
        rows = await db.execute("select stale from summary_state where id = 1")
    except Exception:  # noqa: BLE001 - a catalog from before the summaries
        return False
    return bool(rows.rows) and rows.rows[0]["stale"] == 0


def _selection(request, sources: dict) -> list[tuple[str, str]] | None:
    """The (facet, value) filters of a page, when every filter it has is a facet value;
    None when it has any other filter (a search, a range, custom SQL)."""
    chosen: list[tuple[str, str]] = []
    for key in request.args.keys():
        values = request.args.getlist(key)
        if key in NEUTRAL_ARGS or key.startswith("_facet"):
            continue
        name = key[1:] if key.startswith("_") else key.removesuffix("__exact")
        source = sources.get(name)
        expected = "multi" if key.startswith("_") else "column"
        if source is None or source["kind"] != expected:
            return None
        chosen.extend((name, v) for v in dict.fromkeys(values))
    return chosen


def _value_params(value: str) -> list:
    """A query-string value and, when it reads as an integer, the integer (years are stored as such)."""
    try:
        number = int(value)
    except ValueError:
        return [value, value]
    return [value, number] if -(2**63) <= number < 2**63 else [value, value]


@hookimpl
def filters_from_request(request, database, table, datasette):
    """`?_molecule=esketamine&_mesh=Ketamine`: rows having every value asked for."""
    if table != "articles":
        return None

    async def inner():
        where, params, described = [], {}, []
        for name, source in (await facet_sources(datasette)).items():
            if source["kind"] != "multi":
                continue
            for i, value in enumerate(dict.fromkeys(request.args.getlist(f"_{name}"))):
                param = f"facet_{name}_{i}"
                where.append(f"pmid in (select pmid from ({source['pairs']}) where value = :{param})")
                params[param] = value
                described.append(f'{source["label"].lower()} is "{value_label(name, value)}"')
        return FilterArguments(where, params, described)

    return inner


# The facets a page counts live (no summary answers it: two facet values chosen, a search, a
# range) share this much time. At a million articles one facet of a page of 129,000 rows takes
# 0.1-1 s and the articles page has nine: 8 s. Facets left when it runs out are not counted, and
# the page names them (Datasette's "timed out" line) rather than show counts it did not make.
LIVE_FACETS_MS = 300
LIVE_FACET_MIN_MS = 20  # less than this left: not worth starting a count


def _facet_name(source_and_config: dict) -> str:
    config = source_and_config["config"]
    return config.get("simple") or config.get("name")


class CatalogFacet(Facet):
    """Counts of a facet of `articles` (a column, or a one-to-many relation such as the tags,
    MeSH or publication types) over the rows the table page shows."""

    type = "catalog"

    async def suggest(self):
        return []

    async def _counts(
        self, name: str, source: dict, sources: dict, selection, limit: int, time_limit_ms: int, from_values=False
    ):
        """(rows of (value, count), True when they came from the summary tables); `selection`
        is None when no summary can answer for the page (see facet_results). Most values
        first, but years newest first: a list of years reads in year order. `from_values`:
        a one-to-many facet with far fewer rows than the page is counted from its rows."""
        by_value = name in VALUE_ORDERED_FACETS
        if selection is not None:
            if not selection:
                sql = (
                    "select value, count from facet_counts where facet = :facet "
                    f"order by {'value desc' if by_value else 'count desc, value'} limit :limit"
                )
                params = {"facet": name, "limit": limit}
                return (await self.ds.execute(self.database, sql, params)).rows, True
            ((chosen, value),) = selection
            if source["paired"] and sources[chosen]["paired"]:
                text, number = _value_params(value)
                sql = (
                    "select other_value as value, count from facet_pair_counts "
                    "where facet = :chosen and value in (:text, :number) and other_facet = :facet "
                    f"order by {'other_value desc' if by_value else 'count desc, other_value'} limit :limit"
                )
                params = {"chosen": chosen, "text": text, "number": number, "facet": name, "limit": limit}
                return (await self.ds.execute(self.database, sql, params)).rows, True
        if source["kind"] == "column":
            sql = f"""
                select [{name}] as value, count(*) as count from ({self.sql})
                where [{name}] is not null group by [{name}]
                order by {"value desc" if by_value else "count desc, value"} limit {limit}"""
        else:
            # From the page's rows to their values (a join), not every value tested against
            # the page's rows (an IN list): 40x faster for a rare tag, 1.6x for a common one.
            # CROSS JOIN keeps that order: SQLite would otherwise read every row of the facet
            # and look up its article (population tags for a page of 129,000 rows at a million
            # articles: 0.9 s, against 0.2 s). But from a facet with far fewer rows than the
            # page, to the page's rows (molecule tags for that page: 2 ms, against 155 ms).
            page = f"(select pmid from ({self.sql})) page"
            values = f"({source['pairs']}) v"
            joined = f"{values} cross join {page}" if from_values else f"{page} cross join {values}"
            sql = f"""
                select v.value as value, count(distinct v.pmid) as count
                from {joined} on v.pmid = page.pmid
                where v.value is not null
                group by v.value order by count desc, v.value limit {limit}"""
        rows = await self.ds.execute(self.database, sql, self.params, truncate=False, custom_time_limit=time_limit_ms)
        return rows.rows, False

    async def _live_sizes(self, sources: dict, configs: list, budget_ends: float) -> dict:
        """For counting one-to-many facets live: the page's rows ("page") and each facet's
        (pmid, value) rows in the whole catalog, as last summarised; {} when either is unknown
        or counting the page would not fit the budget (then every facet starts from the page)."""
        if not any(sources.get(_facet_name(c), {}).get("kind") == "multi" for c in configs):
            return {}
        try:
            totals = await self.ds.execute(
                self.database, "select facet, sum(count) as n from facet_counts group by facet"
            )
            limit_ms = int((budget_ends - time.monotonic()) * 1000) // 3
            if limit_ms < LIVE_FACET_MIN_MS:
                return {}
            page = await self.ds.execute(
                self.database, f"select count(*) as n from ({self.sql})", self.params, custom_time_limit=limit_ms
            )
        except (QueryInterrupted, sqlite3.DatabaseError):
            return {}
        return {"page": page.rows[0]["n"], **{row["facet"]: row["n"] for row in totals.rows}}

    async def facet_results(self):
        results: list[dict] = []
        timed_out: list[str] = []
        if self.table != "articles":
            return results, timed_out
        size = self.get_facet_size()
        selected_pairs = self.get_querystring_pairs()
        sources = await facet_sources(self.ds)
        selection = _selection(self.request, sources)
        # Asked once per page, not once per facet: can the summaries answer for it?
        if selection is not None and (
            len(selection) > 1 or not await summaries_current(self.ds.get_database(self.database))
        ):
            selection = None
        configs = self.get_configs()
        if selection is None:
            # Counted live: the facets the address asks for first, then the columns (an index
            # answers most of them), then the relations.
            configs = sorted(
                configs,
                key=lambda c: (c["source"] == "metadata", sources.get(_facet_name(c), {}).get("kind") != "column"),
            )
        per_facet_ms = self.ds.setting("facet_time_limit_ms")
        budget_ends = time.monotonic() + LIVE_FACETS_MS / 1000
        sizes = await self._live_sizes(sources, configs, budget_ends) if selection is None else {}
        for source_and_config in configs:
            name = _facet_name(source_and_config)
            source = sources.get(name)
            if source is None:
                continue
            time_limit_ms = per_facet_ms
            if selection is None:
                time_limit_ms = min(per_facet_ms, int((budget_ends - time.monotonic()) * 1000))
                if time_limit_ms < LIVE_FACET_MIN_MS:
                    timed_out.append(name)
                    continue
            from_values = (
                sizes.get("page") is not None and sizes.get(name) is not None and sizes[name] * 3 < sizes["page"]
            )
            try:
                rows, summarised = await self._counts(
                    name, source, sources, selection, size + 1, time_limit_ms, from_values
                )
            except QueryInterrupted:
                timed_out.append(name)
                continue
            arg = name if source["kind"] == "column" else f"_{name}"
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
                        "label": value_label(name, value),
                        "count": row["count"],
                        "toggle_url": self.ds.absolute_url(self.request, self.ds.urls.path(path)),
                        "selected": selected,
                    }
                )
            results.append(
                {
                    "name": name,
                    "label": source["label"],
                    "type": self.type,
                    "hideable": source_and_config["source"] != "metadata",
                    "toggle_url": self.ds.urls.path(path_with_removed_args(self.request, {"_facet_catalog": name})),
                    "results": values,
                    "truncated": len(rows) > size,
                    "summarised": summarised,
                }
            )
        return results, timed_out


@hookimpl
def register_facet_classes():
    return [CatalogFacet]


# -- exports ----------------------------------------------------------------------------------


def _cell(row, column):
    try:
        value = row[column]
    except (KeyError, IndexError):
        return None
    if isinstance(value, dict):  # a foreign key expanded with its label
        value = value.get("value")
    return value


class NotARecordId(ValueError):
    """A row's pmid that no record can have (SQL typed by hand: `select 'abc' as pmid`)."""


def _pmid_of(value) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
        return value
    if isinstance(value, str) and value.isascii() and _sqlite_integer(value) and int(value) > 0:
        return int(value)
    raise NotARecordId(f"a row's pmid is {str(value)[:40]!r}, not a PubMed id")


def _record_ids(rows) -> list[tuple[str, int | str]]:
    """Each row's record, in the rows' order: ("pmid", PMID) where the row has one, else
    ("ppr_id", PPR id) (a preprint: the search's preprint rows, the preprints table).
    NotARecordId when a pmid is no PubMed id."""
    out: list[tuple[str, int | str]] = []
    for row in rows:
        pmid, ppr_id = _cell(row, "pmid"), _cell(row, "ppr_id")
        if pmid is not None:
            out.append(("pmid", _pmid_of(pmid)))
        elif ppr_id is not None:
            out.append(("ppr_id", str(ppr_id)))
    return out


def _load_records(conn, ids: list[tuple[str, int | str]]) -> list[dict]:
    articles = {r["pmid"]: r for r in export.load_records(conn, [i for kind, i in ids if kind == "pmid"])}
    preprints = {r["ppr_id"]: r for r in export.load_preprint_records(conn, [i for kind, i in ids if kind == "ppr_id"])}
    found = (articles.get(i) if kind == "pmid" else preprints.get(i) for kind, i in dict.fromkeys(ids))
    return [record for record in found if record is not None]


def export_limit_note(datasette, data: dict, shown: int) -> str | None:
    """Why an export holds fewer rows than its list, or None when it holds the whole list."""
    limit = datasette.setting("max_returned_rows")
    if data.get("next"):
        total = data.get("filtered_table_rows_count")
        of = f" of {total:,}" if isinstance(total, int) else ""
        why = (
            f"{limit:,} is the most one request returns (max_returned_rows)"
            if shown >= limit
            else f"the request asked for pages of {shown:,} (_size)"
        )
        return f"This export holds the first {shown:,}{of} records of the list: {why}. The next page: {data.get('next_url')}"
    if data.get("truncated"):
        return (
            f"This export holds the first {shown:,} rows of the answer: {limit:,} is the most one "
            f"request returns (max_returned_rows); the answer has more."
        )
    return None


def _with_note(body: str, fmt: str, note: str | None) -> str:
    """The note as a comment the format allows (RIS: text before the first record, which
    readers skip; BibTeX: @comment). CSL-JSON has no comments: the page says it by the link."""
    if not note:
        return body
    if fmt == "ris":
        return f"Note: {note}\n\n" + body
    if fmt == "bibtex":
        return "@comment{" + note.replace("{", "(").replace("}", ")") + "}\n\n" + body
    return body


def _export_renderer(fmt: str):
    async def render(datasette, request, rows, columns, database, table, query_name, data):
        name = table or query_name or database
        if not can_render(columns):
            # A dict: Datasette keeps its status (it sets a Response's status back to the page's).
            return {
                "status_code": 400,
                "content_type": "text/plain; charset=utf-8",
                "body": f"{name} answers with no article or preprint rows (it has no pmid or ppr_id column), "
                f"so it has nothing to export as {export.FILE_EXTENSIONS[fmt].upper()} for a reference manager; "
                f"take it as .csv or .json.\n",
            }
        try:
            ids = _record_ids(rows)
        except NotARecordId as exc:
            return {
                "status_code": 400,
                "content_type": "text/plain; charset=utf-8",
                "body": f"{name}: {exc}, so there is no record to export as {export.FILE_EXTENSIONS[fmt].upper()}.\n",
            }
        db = datasette.get_database(database)
        records = await db.execute_fn(lambda conn: _load_records(conn, ids))
        headers = {"content-disposition": f'attachment; filename="{name}.{export.FILE_EXTENSIONS[fmt]}"'}
        note = export_limit_note(datasette, data or {}, len(rows))
        if not rows:  # an empty list is an answer (nothing new to screen), said as such
            note = f"{name}: no records match, so this file holds none."
        body = _with_note(export.render(records, fmt), fmt, note)
        return Response(body, content_type=export.MEDIA_TYPES[fmt], headers=headers)

    def can_render(columns):
        return bool({"pmid", "ppr_id"} & set(columns or []))

    return render, can_render


@hookimpl
def register_output_renderer(datasette):
    out = []
    for extension, fmt in (("ris", "ris"), ("bib", "bibtex"), ("csljson", "csl-json")):
        render, can_render = _export_renderer(fmt)
        out.append({"extension": extension, "render": render, "can_render": can_render})
    return out


# -- what one query may cost ------------------------------------------------------------------
# Datasette's time limit interrupts SQLite between steps, so a single C call runs to its end:
# printf('%.*c', 999999999, 'x') spent 9 s padding, randomblob(999999999) 4 s and 1 GB, three at
# once 32 s and 2.9 GB. On every connection: a cap on any one value a query builds or reads
# (more than any real record holds), on the SQL text, and on the bytes one answer carries;
# printf/format refuse widths past PRINTF_MAX_WIDTH; functions no reader needs are refused.
# SQL typed by hand (?sql=, ?_where=) runs USER_SQL_AT_ONCE at a time, so pages keep threads.

VALUE_MAX_BYTES = 8_000_000
SQL_MAX_BYTES = 100_000
ANSWER_MAX_BYTES = 64_000_000
PRINTF_MAX_WIDTH = 10_000
REFUSED_FUNCTIONS = {
    "randomblob",
    "zeroblob",
    "fts3_tokenizer",
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "sqlite_dbpage",
}
USER_SQL_AT_ONCE = 1
USER_SQL_WAIT_SECONDS = 10
_PRINTF_SPEC = re.compile(r"%([-+ #0!,]*)(\*|\d+)?(?:\.(\*|\d*))?(l{0,2})(.)", re.S)


def _refuse_functions(action, name1, name2, database, trigger):
    if action == sqlite3.SQLITE_FUNCTION and (name2 or "").lower() in REFUSED_FUNCTIONS:
        return sqlite3.SQLITE_DENY  # SQLite says "not authorized to use function: NAME"
    return sqlite3.SQLITE_OK


def _printf_conn() -> sqlite3.Connection:
    conn = getattr(_probe, "printf", None)
    if conn is None:
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        if hasattr(conn, "setlimit"):
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, VALUE_MAX_BYTES)
        _probe.printf = conn
    return conn


def printf_width_ok(fmt, args) -> bool:
    """Does every width and precision of a printf() format stay within PRINTF_MAX_WIDTH?"""
    if not isinstance(fmt, str):
        return True
    arg = 0
    for _flags, width, precision, _, kind in _PRINTF_SPEC.findall(fmt):
        if kind == "%":
            continue
        for part in (width, precision):
            if part == "*":
                value = args[arg] if arg < len(args) else 0
                arg += 1
                try:
                    part = abs(int(value))
                except (TypeError, ValueError, OverflowError):
                    part = 0
            if part and int(part) > PRINTF_MAX_WIDTH:
                return False
        arg += 1
    return True


def bounded_printf(*args):
    """SQLite's own printf(), when no width or precision passes PRINTF_MAX_WIDTH."""
    if not args:
        return None
    if not printf_width_ok(args[0], args[1:]):
        raise ValueError(f"printf width or precision over {PRINTF_MAX_WIDTH}")
    marks = ", ".join("?" * len(args))
    return _printf_conn().execute(f"select printf({marks})", args).fetchone()[0]


def _answer_budget():
    """A row factory that refuses an answer once its rows carry ANSWER_MAX_BYTES."""
    import weakref

    current: weakref.ReferenceType[sqlite3.Cursor] | None = None  # the cursor being answered
    answered = 0  # bytes of text and blobs in its rows so far

    def factory(cursor, row):
        nonlocal current, answered
        if current is None or current() is not cursor:
            current, answered = weakref.ref(cursor), 0
        answered += sum(len(v) for v in row if isinstance(v, (str, bytes)))
        if answered > ANSWER_MAX_BYTES:
            raise sqlite3.OperationalError(
                f"this answer is larger than {ANSWER_MAX_BYTES // 1_000_000} MB: ask for fewer rows or columns"
            )
        return sqlite3.Row(cursor, row)

    return factory


@hookimpl(specname="prepare_connection")
def bound_what_a_query_costs(conn):
    if hasattr(conn, "setlimit"):  # Python 3.11+
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, VALUE_MAX_BYTES)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, SQL_MAX_BYTES)
    conn.set_authorizer(_refuse_functions)
    conn.create_function("printf", -1, bounded_printf, deterministic=True)
    conn.create_function("format", -1, bounded_printf, deterministic=True)
    conn.row_factory = _answer_budget()


def _is_user_sql(scope) -> bool:
    from urllib.parse import parse_qsl

    query = scope.get("query_string", b"").decode("latin-1")
    return any(name in ("sql", "_where") for name, _ in parse_qsl(query, keep_blank_values=True))


@hookimpl(specname="asgi_wrapper")
def user_sql_one_at_a_time(datasette):
    slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}  # user SQL running at once, per event loop

    def wrap(app):
        async def limited(scope, receive, send):
            if scope["type"] != "http" or not _is_user_sql(scope):
                return await app(scope, receive, send)
            loop = asyncio.get_running_loop()
            slot = slots.get(loop)
            if slot is None:
                slot = slots[loop] = asyncio.Semaphore(USER_SQL_AT_ONCE)
            try:
                await asyncio.wait_for(slot.acquire(), USER_SQL_WAIT_SECONDS)
            except asyncio.TimeoutError:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [
                            (b"retry-after", b"10"),
                            (b"content-type", b"text/plain; charset=utf-8"),
                            *SECURITY_HEADERS,
                        ],
                    }
                )
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"Busy: other SQL queries are running. Try again in a few seconds.\n",
                    }
                )
                return
            try:
                await app(scope, receive, send)
            finally:
                slot.release()

        return limited

    return wrap


# -- CSV streams -------------------------------------------------------------------------------
# "Stream all rows" (.csv?_stream=on) runs the table's query once per page of the request's
# _size: with _size=1 every row is a query (11 minutes for the articles at 34,000 rows), and
# Datasette 0.65 goes on writing after the reader has left, until the table or max_csv_mb
# ends. A stream therefore always reads pages of max_returned_rows, and stops at the first
# write after the reader disconnects.


class ReaderGone(BaseException):
    """The client of a CSV stream disconnected (a BaseException: Datasette's stream catches
    Exception, prints it and writes it into the stream, which would raise again)."""


def _is_csv_stream(scope) -> bool:
    from urllib.parse import parse_qsl

    if scope["type"] != "http" or not scope.get("path", "").endswith(".csv"):
        return False
    return any(k == "_stream" and v for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")))


@hookimpl(specname="asgi_wrapper")
def csv_streams_in_whole_pages(datasette):
    from urllib.parse import parse_qsl, urlencode

    def wrap(app):
        async def streamed(scope, receive, send):
            if not _is_csv_stream(scope):
                return await app(scope, receive, send)
            args = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            args = [(k, v) for k, v in args if k != "_size"] + [("_size", "max")]
            scope = {**scope, "query_string": urlencode(args).encode("latin-1")}
            gone = asyncio.Event()

            async def watch():
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone.set()

            async def nothing_more_to_read():
                await gone.wait()
                return {"type": "http.disconnect"}

            async def send_while_read(event):
                if gone.is_set():
                    raise ReaderGone
                await send(event)

            watcher = asyncio.ensure_future(watch())
            try:
                await app(scope, nothing_more_to_read, send_while_read)
            except ReaderGone:
                pass
            finally:
                watcher.cancel()

        return streamed

    return wrap


# -- pages that only change with a harvest ----------------------------------------------------
# The catalog is read-only: a page is a function of its URL and the database file. Datasette
# 0.65 makes the front page in 132 queries (82 of them a permission check per table), the
# articles page in 155, each a hop through its SQL thread pool: under 50 requests at once on
# two cores the front page took 13 s. Each page is therefore made once per state of the
# catalog file (its size and mtime, and its -wal's: a harvest changes them) and kept for
# PAGE_CACHE_SECONDS at most; requests for a page being made wait for it instead of making it
# again. Responses carry an ETag: a browser revalidates (Cache-Control: no-cache) and gets a
# 304 until the catalog changes. SQL typed by hand, traces and streams are never kept.

PAGE_CACHE_SECONDS = 60
PAGE_CACHE_BYTES = 64_000_000
PAGE_CACHE_ENTRY_BYTES = 2_000_000
_UNCACHED_ARGS = {"sql", "_where", "_trace", "_stream", "_timelimit"}


def catalog_state(datasette) -> str:
    """A token that changes whenever the served catalog may have changed."""
    db = _catalog_db(datasette)
    if db is None or db.path is None:
        return "none"
    import os

    parts = []
    for suffix in ("", "-wal"):
        try:
            st = os.stat(str(db.path) + suffix)
            parts.append(f"{st.st_mtime_ns}.{st.st_size}")
        except OSError:
            parts.append("-")
    return "/".join(parts)


def _cacheable(scope) -> bool:
    from urllib.parse import parse_qsl

    if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
        return False
    if scope["path"].startswith("/-/") and scope["path"] not in ("/-/versions.json",):
        return False
    names = {name for name, _ in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)}
    if names & _UNCACHED_ARGS:
        return False
    return not any(name == b"cookie" and b"ds_actor" in value for name, value in scope.get("headers", []))


@hookimpl(specname="asgi_wrapper")
def pages_made_once_per_harvest(datasette):
    import asyncio
    import hashlib
    from collections import OrderedDict

    cache: OrderedDict = OrderedDict()  # key -> (made, status, headers, body)
    making: dict = {}
    size = [0]

    def remember(key, entry):
        if key in cache:
            size[0] -= len(cache.pop(key)[3])
        cache[key] = entry
        size[0] += len(entry[3])
        while size[0] > PAGE_CACHE_BYTES and cache:
            size[0] -= len(cache.popitem(last=False)[1][3])

    async def replay(entry, scope, send):
        _, status, headers, body = entry
        etag = next((v for k, v in headers if k == b"etag"), None)
        if etag and any(k == b"if-none-match" and etag in v for k, v in scope.get("headers", [])):
            await send(
                {
                    "type": "http.response.start",
                    "status": 304,
                    "headers": [(k, v) for k, v in headers if k in (b"etag", b"cache-control")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    def wrap(app):
        async def cached(scope, receive, send):
            if not _cacheable(scope):
                return await app(scope, receive, send)
            state = catalog_state(datasette)
            # Pages hold absolute URLs (next_url, feed links, the chart's) that Datasette builds
            # from the request's Host and scheme: a page made for one host is never served to another.
            host = next((v for k, v in scope.get("headers", []) if k.lower() == b"host"), b"")
            key = (scope["path"], scope.get("query_string", b""), state, scope.get("scheme", "http"), host)
            entry = cache.get(key)
            if entry is not None and time.monotonic() - entry[0] < PAGE_CACHE_SECONDS:
                cache.move_to_end(key)
                return await replay(entry, scope, send)
            pending = making.get(key)
            if pending is not None:
                entry = await asyncio.shield(pending)
                if entry is not None:
                    return await replay(entry, scope, send)
                return await app(scope, receive, send)
            pending = making[key] = asyncio.get_running_loop().create_future()
            started, chunks, keep = {}, [], [True]

            async def capture(event):
                if event["type"] == "http.response.start":
                    started.update(event)
                    headers = list(event.get("headers", []))
                    keep[0] = event["status"] == 200 and not any(k.lower() == b"set-cookie" for k, _ in headers)
                    if keep[0]:
                        etag = '"' + hashlib.sha1(repr(key).encode()).hexdigest()[:20] + '"'
                        headers = [(k, v) for k, v in headers if k.lower() not in (b"cache-control", b"etag")]
                        headers += [(b"etag", etag.encode()), (b"cache-control", b"no-cache")]
                        started["headers"] = headers
                        event = {**event, "headers": headers}
                elif event["type"] == "http.response.body" and keep[0]:
                    chunks.append(event.get("body", b""))
                    if sum(map(len, chunks)) > PAGE_CACHE_ENTRY_BYTES:
                        keep[0], chunks[:] = False, []
                await send(event)

            entry = None
            try:
                await app(scope, receive, capture)
                if keep[0] and started and scope["method"] == "GET":
                    entry = (time.monotonic(), started["status"], started["headers"], b"".join(chunks))
                    remember(key, entry)
            finally:
                making.pop(key, None)
                pending.set_result(entry)

        return cached

    return wrap


# -- bidirectional controls -------------------------------------------------------------------
# A title holding U+202E (right-to-left override) shows its text, and whatever follows it on
# the line, reversed: "gnp.exe" reads "exe.png". Every value a page template prints has the
# bidi embedding, override and isolate controls taken out (Jinja's finalize runs on each
# {{ ... }}); the stored text and the JSON, CSV and exports keep them as published.

BIDI_CONTROLS = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def without_bidi_controls(value):
    if isinstance(value, str):  # Markup too: translate() keeps it Markup
        return value.translate(BIDI_CONTROLS)
    return value


@hookimpl(specname="prepare_jinja2_environment")
def strip_bidi_controls_for_display(env):
    previous = env.finalize
    env.finalize = without_bidi_controls if previous is None else (lambda v: without_bidi_controls(previous(v)))


@hookimpl(specname="handle_exception")
def row_url_with_the_wrong_key(datasette, request, exception):
    """/catalog/article_xml/1000.blob names one value of a two-column key: Datasette 0.65 runs
    the row query with a parameter missing and answers 500. That row does not exist: 404."""
    url_vars = getattr(request, "url_vars", None) or {}
    if not (
        isinstance(exception, sqlite3.ProgrammingError)
        and url_vars.get("pks") is not None
        and "binding parameter" in str(exception)
    ):
        return None
    from datasette.handle_exception import handle_exception as datasette_error_page
    from datasette.utils.asgi import NotFound

    table = url_vars.get("table", "")
    given = len(str(url_vars["pks"]).split(","))
    return datasette_error_page(
        datasette,
        request,
        NotFound(f"No such row: the URL gives {given} key value{'s' * (given != 1)}, and {table} has a longer key"),
    )


# -- security headers -------------------------------------------------------------------------


def _script_hash(script: str) -> str:
    import base64
    import hashlib

    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


# No inline script runs but these: Datasette 0.65's table page sets one variable inline
# (templates/table.html); its other inline scripts are files in db/static (the templates
# _close_open_menus.html and _codemirror_foot.html here load them), and the catalog's own
# templates have none. An injected <script> therefore does not run.
INLINE_SCRIPTS = ["DATASETTE_ALLOW_FACET = true;", "DATASETTE_ALLOW_FACET = false;"]

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' " + " ".join(_script_hash(s) for s in INLINE_SCRIPTS),
        # Datasette's templates carry inline <style> blocks, the chart's legend style attributes.
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-frame-options", b"DENY"),
]
_OURS = {name for name, _ in SECURITY_HEADERS}
READ_METHODS = {"GET", "HEAD"}  # as the README says: OPTIONS too is refused


@hookimpl
def asgi_wrapper(datasette):
    def wrap(app):
        async def with_security_headers(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            if scope.get("method", "GET") not in READ_METHODS:
                # A read-only catalog: no route takes a write, so none is offered.
                await send(
                    {
                        "type": "http.response.start",
                        "status": 405,
                        "headers": [(b"allow", b"GET, HEAD"), (b"content-type", b"text/plain; charset=utf-8")]
                        + SECURITY_HEADERS,
                    }
                )
                await send({"type": "http.response.body", "body": b"This catalog is read-only.\n"})
                return

            async def send_with_headers(event):
                if event["type"] == "http.response.start":
                    headers = [h for h in event.get("headers", []) if h[0].lower() not in _OURS]
                    event = {**event, "headers": headers + SECURITY_HEADERS}
                await send(event)

            await app(scope, receive, send_with_headers)

        return with_security_headers

    return lambda app: wrap(csv_formula_guard(app))


# -- CSV: no formulas for spreadsheets --------------------------------------------------------
# A cell that begins with = + - @ (or a tab or carriage return) is run as a formula by Excel,
# LibreOffice and Google Sheets when the file is opened: a record's title could then fetch a
# URL or start a program. As OWASP advises, such a cell is served with a single quote before
# it and inside double quotes ("'=..."), so a spreadsheet shows it as text. Numbers (-1.5, +3)
# are left alone. Datasette writes CSV itself, row by row (and page by page with _stream=on),
# so the rows are rewritten as they pass, field by field, never holding the whole body.

FORMULA_STARTS = frozenset(b"=+-@\t\r")
_CSV_FIELD = re.compile(rb'("(?:[^"]|"")*"|[^,"\r\n]*)(,|\r\n|\n)')
# What may still become a field when more bytes arrive.
_CSV_FIELD_PREFIX = re.compile(rb'"(?:[^"]|"")*"?|[^,"\r\n]*\r?')
_NUMBER = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def neutralise_csv_field(raw: bytes) -> bytes:
    """One CSV field as written (quoted or not): unchanged, or quoted with a leading single
    quote when a spreadsheet would read it as a formula."""
    quoted = raw[:1] == b'"'
    inner = raw[1:-1] if quoted else raw
    if not inner or inner[0] not in FORMULA_STARTS or _NUMBER.fullmatch(inner):
        return raw
    # A quoted field's quotes are doubled already; an unquoted one has none (csv.writer).
    return b"\"'" + (inner if quoted else inner.replace(b'"', b'""')) + b'"'


class CsvFormulaGuard:
    """Rewrites a CSV body chunk by chunk: `feed(chunk)` returns the bytes ready to send, keeping
    back only an unfinished field; `feed(last, final=True)` returns the rest."""

    def __init__(self):
        self.pending = b""
        self.broken = False  # not CSV as csv.writer writes it (Datasette's error text): passed on

    def feed(self, chunk: bytes, final: bool = False) -> bytes:
        data = self.pending + chunk
        if self.broken:
            self.pending = b""
            return data
        out, pos = [], 0
        while True:
            m = _CSV_FIELD.match(data, pos)
            if m is None:
                break
            out.append(neutralise_csv_field(m.group(1)) + m.group(2))
            pos = m.end()
        rest = data[pos:]
        if final:
            self.pending = b""
            whole = _CSV_FIELD_PREFIX.fullmatch(rest)
            out.append(neutralise_csv_field(rest) if whole and rest[-1:] != b"\r" else rest)
        elif _CSV_FIELD_PREFIX.fullmatch(rest):
            self.pending = rest
        else:
            self.broken, self.pending = True, b""
            out.append(rest)
        return b"".join(out)


def csv_formula_guard(app):
    """ASGI middleware: every CSV the catalog serves (a table's, a question's, `?sql=`; a path
    ending in .csv answered as text/plain or text/csv) passes through CsvFormulaGuard."""

    async def guarded(scope, receive, send):
        if scope["type"] != "http" or not scope.get("path", "").endswith(".csv"):
            return await app(scope, receive, send)
        guard = None

        async def send_guarded(event):
            nonlocal guard
            if event["type"] == "http.response.start":
                headers = event.get("headers") or []
                content_type = next((bytes(v) for k, v in headers if bytes(k).lower() == b"content-type"), b"")
                if content_type.split(b";")[0].strip().lower() in (b"text/plain", b"text/csv"):
                    guard = CsvFormulaGuard()
                    # The body changes length as it is rewritten.
                    event = {**event, "headers": [h for h in headers if bytes(h[0]).lower() != b"content-length"]}
            elif event["type"] == "http.response.body" and guard is not None:
                final = not event.get("more_body", False)
                event = {**event, "body": guard.feed(event.get("body", b""), final=final)}
                if final:
                    guard = None
            await send(event)

        await app(scope, receive, send_guarded)

    return guarded


# -- feeds ------------------------------------------------------------------------------------


@hookimpl
def startup(datasette):
    """datasette-atom 0.9 takes max() of the rows' atom_updated: a search with no hits
    answers a 500. Answer an empty, valid feed instead."""
    if "atom" not in datasette.renderers:
        return
    render_atom, can_render_atom = datasette.renderers["atom"]

    async def render_atom_or_empty(
        datasette, request, sql, columns, rows, database, table, query_name, view_name, data
    ):
        if rows:
            return render_atom(
                datasette=datasette,
                request=request,
                sql=sql,
                columns=columns,
                rows=rows,
                database=database,
                table=table,
                query_name=query_name,
                view_name=view_name,
                data=data,
            )
        from feedgen.feed import FeedGenerator

        db = datasette.get_database(database)
        last = await db.execute("select max(finished_at) from harvest_runs where status = 'success'")
        updated = last.rows[0][0] if last.rows and last.rows[0][0] else "1970-01-01T00:00:00+00:00"
        title = _NOT_XML_CHARS.sub("", request.args.get("_feed_title") or "") or query_name or database
        try:
            title = datasette.metadata(database=database)["queries"][query_name]["title"]
        except (KeyError, TypeError):
            pass
        fg = FeedGenerator()
        fg.id(request.url)
        fg.link(href=request.url, rel="self")
        fg.title(title)
        fg.updated(updated)
        fg.author({"name": "Ketamine literature catalog"})
        return Response(fg.atom_str(pretty=True), content_type="application/xml; charset=utf-8")

    async def render_feed(datasette, request, sql, columns, rows, database, table, query_name, view_name, data):
        try:
            response = await render_atom_or_empty(
                datasette, request, sql, columns, rows, database, table, query_name, view_name, data
            )
        except ValueError as exc:  # SQL typed by hand: atom_updated not a date, a title XML cannot hold
            problem = " ".join(str(exc).split())[:200]
            return {  # a dict: Datasette keeps its status (a Response's it sets back to the page's)
                "status_code": 400,
                "content_type": "text/plain; charset=utf-8",
                "body": f"This answer cannot be written as an Atom feed: {problem}\n",
            }
        return finish_feed(datasette, request, query_name, response)

    datasette.renderers["atom"] = (render_feed, can_render_atom)


ATOM_NS = "http://www.w3.org/2005/Atom"
_RELATIVE_LINK = re.compile(r'\b(href|src)="/(?!/)')


# What XML 1.0 cannot hold (C0 controls but tab and line ends, surrogates, U+FFFE/U+FFFF): a
# query-string value carrying one would make the feed's title unwritable.
_NOT_XML_CHARS = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def feed_title(base_title: str, request) -> str:
    """A feed's title says what it follows ("Ketamine catalog search: esketamine"), not only its
    query's title; characters XML cannot hold are left out of what the request gave."""

    def shown(text) -> str:
        return _NOT_XML_CHARS.sub("", text or "").strip()

    q = shown(request.args.get("q"))
    if q:
        return f"Ketamine catalog search: {q}"
    given = [
        f"{shown(key)} {shown(request.args.get(key))}"
        for key in request.args.keys()
        if not key.startswith("_") and shown(request.args.get(key))
    ]
    return f"{base_title}: {', '.join(given)}" if given else base_title


def finish_feed(datasette, request, query_name, response):
    """Every feed titled with what it follows, and every link in it absolute: a feed reader
    has no page to resolve "/catalog/articles/123" against."""
    from lxml import etree

    try:
        feed = etree.fromstring(response.body if isinstance(response.body, bytes) else response.body.encode())
    except (etree.XMLSyntaxError, AttributeError, ValueError):
        return response
    base = datasette.absolute_url(request, "/").rstrip("/")
    title = feed.find(f"{{{ATOM_NS}}}title")
    if title is not None:
        title.text = feed_title(title.text or query_name or "", request)
    for content in feed.iter(f"{{{ATOM_NS}}}content"):
        if content.text:
            content.text = _RELATIVE_LINK.sub(rf'\1="{base}/', content.text)
    for link in feed.iter(f"{{{ATOM_NS}}}link"):
        href = link.get("href") or ""
        if href.startswith("/") and not href.startswith("//"):
            link.set("href", base + href)
    body = etree.tostring(feed, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return Response(body, status=response.status, headers=dict(response.headers), content_type=response.content_type)


FEED_ABSTRACT_CHARS = 900
_PMCID = re.compile(r"PMC\d+")
_NCT_ID = re.compile(r"NCT\d{8}")


def _feed_abstract(abstract) -> str:
    text = str(abstract or "")
    return text[:FEED_ABSTRACT_CHARS] + " …" if len(text) > FEED_ABSTRACT_CHARS else text


def _doi_link(doi) -> Markup:
    return Markup('<a href="{}">DOI</a>').format(DOI.format(quote(str(doi), safe="/:;()._-")))


def feed_entry_html(pmid, journal, published, study_design, abstract, doi, pmcid, trial_ids) -> str:
    """A feed entry's HTML (the SQL function feed_new and feed_search call): the record's text
    escaped, never its markup, and only our own links: the catalog's page (relative), PubMed,
    doi.org, PMC and ClinicalTrials.gov, all https. A publisher's <img> or <a href> in an
    abstract reaches a feed reader as text, so no reader fetches anything it names."""
    design = str(study_design or "unclassified").replace("_", " ")
    text = _feed_abstract(abstract)
    parts = [Markup("<p><em>{}</em> {} · {}</p>").format(journal or "", published or "", design)]
    if text:
        parts.append(Markup("<p>{}</p>").format(text))
    links = [
        Markup('<a href="/catalog/articles/{}">Open in the catalog</a>').format(int(pmid)),
        Markup('<a href="{}">PubMed</a>').format(PUBMED.format(int(pmid))),
    ]
    if doi:
        links.append(_doi_link(doi))
    if pmcid and _PMCID.fullmatch(str(pmcid)):
        links.append(Markup('<a href="{}">PMC</a>').format(PMC.format(pmcid)))
    for trial_id in dict.fromkeys(str(trial_ids or "").upper().split()):
        if _NCT_ID.fullmatch(trial_id):
            links.append(Markup('<a href="https://clinicaltrials.gov/study/{}">{}</a>').format(trial_id, trial_id))
    parts.append(Markup("<p>{}</p>").format(Markup(" · ").join(links)))
    return str(Markup("").join(parts))


EUROPEPMC_PREPRINT = "https://europepmc.org/article/PPR/{}"
_PPR_ID = re.compile(r"PPR\d{1,12}")


def preprint_entry_html(ppr_id, server, version, posted, abstract, doi, published_pmid) -> str:
    """A preprint's feed entry HTML (feed_preprints, feed_search), as feed_entry_html makes a
    record's: its text escaped, only our own links (the catalog's preprint page, Europe PMC,
    doi.org, and the published record's catalog page and PubMed when it has one)."""
    text = _feed_abstract(abstract)
    line = f"Preprint (not peer reviewed) · {server or 'Europe PMC'}"
    line += f" · version {version}" if version else ""
    line += f" · posted {posted}" if posted else ""
    parts = [Markup("<p><em>{}</em></p>").format(line)]
    if text:
        parts.append(Markup("<p>{}</p>").format(text))
    links = []
    if _PPR_ID.fullmatch(str(ppr_id or "")):
        links.append(Markup('<a href="/catalog/preprints/{}">Open in the catalog</a>').format(ppr_id))
        links.append(Markup('<a href="{}">Europe PMC</a>').format(EUROPEPMC_PREPRINT.format(ppr_id)))
    if doi:
        links.append(_doi_link(doi))
    if published_pmid is not None and str(published_pmid).isdecimal():
        pmid = int(published_pmid)
        links.append(Markup('<a href="/catalog/articles/{}">Published as PMID {}</a>').format(pmid, pmid))
        links.append(Markup('<a href="{}">PubMed</a>').format(PUBMED.format(pmid)))
    if links:
        parts.append(Markup("<p>{}</p>").format(Markup(" · ").join(links)))
    return str(Markup("").join(parts))


# -- cells ------------------------------------------------------------------------------------

_SNIPPET_MARK = re.compile(r"\*\*(.+?)\*\*")


def trial_url(trial_id: str) -> str:
    trial_id = trial_id.strip()
    if trial_id.upper().startswith("NCT"):
        return f"https://clinicaltrials.gov/study/{trial_id.upper()}"
    if trial_id.upper().startswith("ISRCTN"):
        return f"https://www.isrctn.com/{trial_id.upper()}"
    return f"https://trialsearch.who.int/Trial2.aspx?TrialID={html.escape(trial_id)}"


def _link(url: str, text: str) -> Markup:
    return Markup('<a href="{}">{}</a>').format(url, text)


@hookimpl
def render_cell(value, column, table, database, datasette):
    if database != DATABASE or value in (None, ""):
        return None
    if column == "search_snippet":
        return Markup(_SNIPPET_MARK.sub(r"<mark>\1</mark>", str(escape(value))))
    if column == "doi":
        return _link(DOI.format(value), value)
    if column in ("pmcid",) and str(value).startswith("PMC"):
        return _link(PMC.format(value), value)
    if column in ("trial_id", "trial_ids"):
        ids = [v.strip() for v in str(value).split(";") if v.strip()]
        return Markup("; ").join(_link(trial_url(v), v) for v in ids)
    if column in ("pmid", "ref_pmid") and table is None:
        # Query results: a PMID opens its article page.
        return _link(datasette.urls.row(DATABASE, "articles", str(value)), value)
    return None


# -- template variables ----------------------------------------------------------------------

# Chart groups, bottom to top, with the designs they hold and an Okabe-Ito colour.
DESIGN_GROUPS = [
    ("Randomised trials", ("rct", "crossover_rct"), "#0072B2"),
    ("Other trials and protocols", ("open_label_trial", "trial_protocol"), "#56B4E9"),
    ("Systematic reviews, meta-analyses", ("systematic_review", "meta_analysis"), "#D55E00"),
    ("Observational", ("observational_cohort", "case_control", "secondary_analysis"), "#009E73"),
    ("Case reports", ("case_report_series",), "#CC79A7"),
    ("Narrative reviews", ("narrative_review",), "#E69F00"),
    ("Preclinical", ("preclinical_animal", "in_vitro"), "#8C6D31"),
    ("Commentary, guidelines", ("commentary_letter", "guideline_consensus"), "#F0E442"),
    ("Other or unclassified", ("other", None), "#999999"),
]
_GROUP_OF = {design: i for i, (_, designs, _) in enumerate(DESIGN_GROUPS) for design in designs}


def _catalog_db(datasette):
    if DATABASE in datasette.databases:
        return datasette.get_database(DATABASE)
    return None


async def _rows(db, sql, params=None) -> list[dict]:
    result = await db.execute(sql, params or [])
    return [dict(row) for row in result.rows]


def year_design_chart(counts: list[dict], *, database: str = DATABASE, urls=None) -> Markup:
    """Records per publication year, stacked by design group, as an inline SVG whose bars
    link to the articles table filtered to that year."""
    by_year: dict[int, list[int]] = defaultdict(lambda: [0] * len(DESIGN_GROUPS))
    for row in counts:
        if row["pub_year"] is None:
            continue
        group = _GROUP_OF.get(row["study_design"], len(DESIGN_GROUPS) - 1)
        by_year[int(row["pub_year"])][group] += row["records"]
    if not by_year:
        return Markup('<p class="chart-empty">No records yet.</p>')
    years = list(range(min(by_year), max(by_year) + 1))
    top = max(sum(by_year[y]) for y in years)
    step = _nice_step(top)
    y_max = step * -(-top // step)
    width, height, left, bottom, top_pad = 760, 260, 44, 30, 10
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    bar_w = plot_w / len(years)
    table_url = urls.table(database, "articles") if urls else f"/{database}/articles"
    parts = [
        f'<svg class="year-chart" role="group" aria-labelledby="year-chart-title" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        '<title id="year-chart-title">Records per publication year, by study design</title>',
    ]
    for tick in range(0, y_max + 1, step):
        y = top_pad + plot_h - plot_h * tick / y_max
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{tick:,}</text>')
    label_every = max(1, round(len(years) / 12))
    for i, year in enumerate(years):
        x = left + i * bar_w
        y = top_pad + plot_h
        total = sum(by_year[year])
        if total:
            parts.append(f'<a href="{html.escape(f"{table_url}?{CURRENT}&pub_year={year}")}">')
            parts.append(f"<title>{year}: {total:,} records</title>")
            for g, n in enumerate(by_year[year]):
                if not n:
                    continue
                h = plot_h * n / y_max
                y -= h
                name, _, colour = DESIGN_GROUPS[g]
                parts.append(
                    f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" '
                    f'fill="{colour}"><title>{year} · {html.escape(name)}: {n:,}</title></rect>'
                )
            parts.append("</a>")
        last_gap = (len(years) - 1) % label_every
        if i % label_every == 0 or (i == len(years) - 1 and last_gap * 2 >= label_every):
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - 10}" text-anchor="middle" class="tick">{year}</text>'
            )
    parts.append("</svg>")
    present = {g for year in years for g, n in enumerate(by_year[year]) if n}
    legend = "".join(
        f'<li><span class="swatch" style="background:{colour}"></span>{html.escape(name)}</li>'
        for g, (name, _, colour) in enumerate(DESIGN_GROUPS)
        if g in present
    )
    return Markup("".join(parts) + f'<ul class="chart-legend">{legend}</ul>')


def _nice_step(top: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000):
        if top / step <= 5:
            return step
    return 10 ** len(str(top))


# The front page's ready-made questions, by what a researcher is doing; a question not
# named here (a new one in queries.sql) joins the last group until it is placed.
QUESTION_GROUPS = [
    (
        "Find studies",
        [
            "rcts_by_molecule",
            "most_cited_rcts_by_molecule",
            "esketamine_trials",
            "systematic_reviews",
            "registered_trials",
            "trials_reported_more_than_once",
            "rcts_awaiting_indexing",
            "retracted_or_corrected",
            "retractions_explained",
        ],
    ),
    (
        "Registered trials and their papers",
        [
            "trials_completed_without_paper",
            "trials_results_without_paper",
            "trials_ongoing_by_molecule",
            "trials_reported_in_several_papers",
            "trial_status_changes",
        ],
    ),
    ("Follow what is new", ["new_since", "new_records_by_design", "new_rcts_for_screening"]),
    ("Audit the search (PRISMA)", ["prisma_flow", "search_strategy", "harvest_health_now"]),
    (
        "Explore the field",
        [
            "counts_per_year_by_design",
            "rising",
            "rct_share_by_year",
            "route_population_mix",
            "top_journals",
            "top_rct_authors",
            "funders_of_rcts",
            "mesh_cooccurrence",
        ],
    ),
]


def group_questions(questions: list[dict]) -> list[dict]:
    """[{title, questions}] in QUESTION_GROUPS' order; every question exactly once."""
    by_name = {q["name"]: q for q in questions}
    placed = {name for _, names in QUESTION_GROUPS for name in names}
    groups: list[dict] = []
    for title, names in QUESTION_GROUPS:
        groups.append({"title": title, "questions": [by_name[n] for n in names if n in by_name]})
    groups[-1]["questions"] += [q for q in questions if q["name"] not in placed]
    return [g for g in groups if g["questions"]]


async def _pubmed_runs(db) -> str:
    """The SQL condition that keeps PubMed's runs (and imports) in `harvest_runs`: empty for a
    catalog from before ClinicalTrials.gov (migration 0011), whose runs all are PubMed's."""
    columns = await db.table_columns("harvest_runs")
    return " and coalesce(source, 'pubmed') = 'pubmed'" if "source" in columns else ""


async def front_page_vars(datasette) -> dict:
    db = _catalog_db(datasette)
    if db is None:
        return {}
    summarised = await summaries_current(db)
    counts = (
        (await _rows(db, "select * from catalog_counts"))[0]
        if summarised
        else (
            await _rows(
                db,
                """
        select count(*) as stored,
               coalesce(sum(matches_query = 1 and is_deleted = 0 and psychiatric = 1), 0) as current,
               coalesce(sum(is_retracted = 1), 0) as retracted,
               coalesce(sum(trial_ids is not null and trial_ids != ''), 0) as with_trials,
               min(case when matches_query = 1 and is_deleted = 0 and psychiatric = 1 then pub_year end) as first_year,
               max(case when matches_query = 1 and is_deleted = 0 and psychiatric = 1 then pub_year end) as last_year,
               coalesce(sum(matches_query = 1 and is_deleted = 0 and coalesce(psychiatric, 0) = 0), 0) as set_aside
        from articles""",
            )
        )[0]
    )
    # The last harvest the page reports is PubMed's: the records' own (a trials run has its line).
    pubmed = await _pubmed_runs(db)
    successes = await _rows(
        db,
        f"""
        select * from harvest_runs where status = 'success'{pubmed} order by id desc limit 1""",
    )
    last_run = successes[0] if successes else None
    attempts = await _rows(db, f"select * from harvest_runs where 1{pubmed} order by id desc limit 1")
    latest_attempt = attempts[0] if attempts else None
    # A failure since the last full sweep is news even when a later run succeeded (the README's
    # promise: the front page shows the last failure); one before it is history.
    last_full = await _rows(
        db,
        f"select id from harvest_runs where status = 'success' and mode like 'full%'{pubmed} order by id desc limit 1",
    )
    failures = await _rows(
        db,
        f"""
        select * from harvest_runs where status in ('failed', 'aborted') and mode != 'import'{pubmed}
        and id > ? order by id desc limit 1""",
        [last_full[0]["id"] if last_full else 0],
    )
    last_failure = failures[0] if failures else None
    new_in_last = 0
    if last_run and last_run.get("new") is not None:
        new_in_last = last_run["new"]  # what the run recorded: rows are flagged, never removed
    elif last_run:
        new_in_last = (
            await _rows(db, "select count(*) as n from articles where first_seen_run = ?", [last_run["id"]])
        )[0]["n"]
    by_year = await _rows(
        db,
        "select pub_year, study_design, records from current_year_design"
        if summarised
        else """
        select pub_year, study_design, count(*) as records from articles
        where matches_query = 1 and is_deleted = 0 and psychiatric = 1 group by pub_year, study_design""",
    )
    designs = await _rows(
        db,
        """
        select study_design, sum(records) as records from current_year_design
        group by study_design order by records desc"""
        if summarised
        else """
        select study_design, count(*) as records from articles
        where matches_query = 1 and is_deleted = 0 and psychiatric = 1 group by study_design order by records desc""",
    )
    queries = [
        {"name": name, "title": q.get("title") or name, "description": q.get("description")}
        for name, q in (await datasette.get_canned_queries(DATABASE, None)).items()
    ]
    questions = [q for q in queries if not q["name"].startswith("feed_") and q["name"] != "search"]
    return {
        "catalog": {
            "counts": counts,
            "last_run": last_run,
            "latest_attempt": latest_attempt,
            "last_failure": last_failure,
            "new_in_last_run": new_in_last,
            "designs": [
                dict(d, label=value_label("study_design", d["study_design"] or "unclassified")) for d in designs
            ],
            "chart": year_design_chart(by_year, urls=datasette.urls),
            "current_filter": CURRENT,
            "set_aside_filter": SET_ASIDE,
            "questions": questions,
            "question_groups": group_questions(questions),
            "feeds": [q for q in queries if q["name"].startswith("feed_")],
        }
    }


NOTICE_TEXT = {
    "RetractionIn": ("retracted", "Retracted", "PubMed links a retraction notice to this article"),
    "RetractionOf": ("notice", "Retraction notice", "This record is the notice retracting"),
    "ExpressionOfConcernIn": ("concern", "Expression of concern", "The journal published an expression of concern"),
    "ErratumIn": ("erratum", "Erratum", "A correction to this article was published"),
    "CorrectedandRepublishedIn": ("erratum", "Corrected and republished", "A corrected version was republished"),
    "UpdateIn": ("update", "Updated", "An updated version of this article was published"),
    "ErratumFor": ("notice", "Erratum notice", "This record is a correction to"),
}


async def article_page_vars(datasette, request) -> dict:
    db = _catalog_db(datasette)
    try:
        pmid = int(request.url_vars["pks"])
    except (KeyError, ValueError):
        return {}
    one = lambda sql: _rows(db, sql, [pmid])  # noqa: E731
    found = await one("select * from articles where pmid = ?")
    if not found:
        return {}
    article = found[0]
    people = await one("""
        select aa.role, aa.position, aa.orcid, aa.equal_contrib, au.display_name, au.last_name,
               au.fore_name, au.collective_name,
               (select group_concat(affiliation, ' | ') from article_author_affiliations f
                where f.pmid = aa.pmid and f.role = aa.role and f.position = aa.position) as affiliations
        from article_authors aa join authors au on au.id = aa.author_id
        where aa.pmid = ? order by aa.role, aa.position""")
    refs = await one("""
        select c.ref_type, c.ref_pmid, c.ref_source, a.title as ref_title, a.pmid is not null as in_catalog
        from comments_corrections c left join articles a on a.pmid = c.ref_pmid
        where c.pmid = ? order by c.position""")
    referenced_by = await one("""
        select c.pmid, c.ref_type, a.title from comments_corrections c join articles a on a.pmid = c.pmid
        where c.ref_pmid = ? order by c.pmid""")
    notices = []
    for ref in refs:
        if ref["ref_type"] in NOTICE_TEXT:
            kind, label, text = NOTICE_TEXT[ref["ref_type"]]
            notices.append({**ref, "kind": kind, "label": label, "text": text})
    if article["is_retracted"] and not any(n["kind"] == "retracted" for n in notices):
        notices.insert(
            0,
            {
                "kind": "retracted",
                "label": "Retracted",
                "text": "PubMed indexes this article as a retracted publication",
                "ref_pmid": None,
                "ref_source": None,
                "ref_title": None,
                "in_catalog": 0,
            },
        )
    notices.sort(key=lambda n: ["retracted", "concern", "notice", "erratum", "update"].index(n["kind"]))
    mesh = await one("""
        select d.name, am.major, am.descriptor_ui,
               (select group_concat(q.qualifier_name || case when q.major then '*' else '' end, ', ')
                from article_mesh_qualifiers q
                where q.pmid = am.pmid and q.descriptor_ui = am.descriptor_ui) as qualifiers
        from article_mesh am join mesh_descriptors d on d.descriptor_ui = am.descriptor_ui
        where am.pmid = ? order by am.major desc, d.name""")
    tags = await one("""
        select facet, value, method, evidence, confidence from article_tags where pmid = ?
        order by case facet when 'design' then 0 when 'molecule' then 1 when 'route' then 2
                 when 'population' then 3 else 4 end, facet, confidence desc""")
    for tag in tags:
        tag["label"] = value_label(tag["facet"] if tag["facet"] != "design" else "design", tag["value"])
    trials = await one("select registry, trial_id, source from trial_registrations where pmid = ? order by trial_id")
    for trial in trials:
        trial["url"] = trial_url(trial["trial_id"])
    links = [{"label": f"PubMed {pmid}", "url": PUBMED.format(pmid), "kind": "pubmed"}]
    if article["doi"]:
        links.append({"label": f"DOI {article['doi']}", "url": DOI.format(article["doi"]), "kind": "doi"})
    if article["pmcid"]:
        links.append(
            {"label": f"Full text in PMC ({article['pmcid']})", "url": PMC.format(article["pmcid"]), "kind": "pmc"}
        )
    # One link per trial, however many ways the record and the registry link them.
    for trial in {t["trial_id"]: t for t in trials}.values():
        links.append({"label": f"{trial['registry']} {trial['trial_id']}", "url": trial["url"], "kind": "trial"})
    return {
        "article": {
            "row": article,
            "authors": [p for p in people if p["role"] == "author"],
            "editors": [p for p in people if p["role"] == "editor"],
            "sections": await one(
                "select label, nlm_category, text from abstract_sections where pmid = ? order by position"
            ),
            "mesh": mesh,
            "publication_types": await one("""
                select pt.name, pt.ui from article_publication_types apt
                join publication_types pt on pt.ui = apt.publication_type_ui where apt.pmid = ? order by pt.name"""),
            "keywords": await one("select keyword, owner, major from keywords where pmid = ? order by position"),
            "chemicals": await one("select name, registry_number from chemicals where pmid = ? order by position"),
            "grants": await one(
                "select grant_id, acronym, agency, country from grants where pmid = ? order by position"
            ),
            "trials": trials,
            "tags": tags,
            "notices": notices,
            "references": [r for r in refs if r["ref_type"] not in NOTICE_TEXT],
            "referenced_by": referenced_by,
            "history": await one("select pub_status, date from article_history where pmid = ? order by date"),
            "events": await one("""
                select e.event, e.detail, e.run_id, e.recorded_at from article_events e
                where e.pmid = ? order by e.id"""),
            "links": links,
            "languages": [LANGUAGES.get(code, code) for code in (article["language"] or "").split("; ") if code],
        },
        "value_label": value_label,
    }


# Choices for canned-query parameters, by parameter name.
PARAM_CHOICES = {
    "molecule": "select distinct value from article_tags where facet = 'molecule' order by value",
    "design": "select distinct study_design from articles where study_design is not null order by 1",
    "registry": "select distinct registry from trial_registrations order by 1",
    "status": "select 'Retracted' union all select 'Retraction notice' union all select 'Erratum published' "
    "union all select 'Expression of concern' union all select 'Updated version published' "
    "union all select 'Corrected and republished'",
}

# The same lists from facet_counts: at 1,000,000 articles "distinct study_design" reads an
# index of a million entries on every query page.
PARAM_CHOICE_FACETS = {"molecule": "molecule", "design": "study_design", "registry": "registry"}


async def query_page_vars(datasette, request, template) -> dict:
    db = _catalog_db(datasette)
    out: dict = {}
    if db is None:
        return out
    q = (request.args.get("q") or "").strip()
    if template == "query-catalog-search.html" or q:
        out["search"] = {
            "q": q,
            "valid": fts_syntax_ok(q) if q else True,
            "as_searched": fts_query(q) if q else "",
            "kind": (request.args.get("kind") or "").strip().lower(),
            # Syntax the records' index reads but the preprints' cannot (mesh_terms:...): no preprint is searched.
            "preprints_unsearched": bool(q) and fts_syntax_ok(q) and not fts_syntax_ok(q, "preprints"),
        }
    choices = {}
    summarised = await summaries_current(db)
    for name, sql in PARAM_CHOICES.items():
        if summarised and name in PARAM_CHOICE_FACETS:  # the values the summaries already list
            sql = f"select value from facet_counts where facet = '{PARAM_CHOICE_FACETS[name]}' order by value"
        choices[name] = [row[0] for row in (await db.execute(sql)).rows]
    out["param_choices"] = choices
    out["value_label"] = value_label
    last = await _rows(
        db,
        "select id, started_at, finished_at from harvest_runs where status = 'success'"
        f"{await _pubmed_runs(db)} order by id desc limit 1",
    )
    out["last_harvest"] = last[0] if last else None
    return out


async def full_list_renderers(datasette, request, table, columns) -> dict[str, str]:
    """The table page's "This data as" links, each for the whole list the page is on (from its
    first row, `_size=max`: up to max_returned_rows) rather than the page's 50 rows."""
    from urllib.parse import parse_qsl, urlencode

    from datasette.utils import await_me_maybe, call_with_supported_arguments

    db = _catalog_db(datasette)
    args = [
        (k, v)
        for k, v in parse_qsl(request.query_string, keep_blank_values=True)
        if k not in ("_next", "_size", "_format")
    ]
    if await db.foreign_keys_for_table(table) and not any(k == "_labels" for k, _ in args):
        args.append(("_labels", "on"))
    args.append(("_size", "max"))
    out = {}
    for key, (_, can_render) in datasette.renderers.items():
        renders = await await_me_maybe(
            call_with_supported_arguments(
                can_render,
                datasette=datasette,
                columns=columns or [],
                rows=[],
                sql=None,
                query_name=None,
                database=DATABASE,
                table=table,
                request=request,
                view_name="table",
            )
        )
        if renders:
            out[key] = datasette.urls.table(DATABASE, table, format=key) + "?" + urlencode(args)
    return out


async def table_page_vars(datasette, table, request=None, columns=None) -> dict:
    metadata = datasette.metadata(database=DATABASE, table=table) or {}
    labels = {name: source["label"] for name, source in (await facet_sources(datasette)).items()}
    labels.update(metadata.get("facet_labels") or {})
    order = []
    for config in metadata.get("facets") or []:
        order.append(config if isinstance(config, str) else next(iter(config.values())))
    out = {"facet_labels": labels, "facet_order": order, "value_label": value_label}
    if request is not None and table in await _table_names(_catalog_db(datasette)):
        out["renderers"] = await full_list_renderers(datasette, request, table, columns)
    return out


@hookimpl
def extra_template_vars(template, database, table, columns, view_name, request, datasette):
    async def inner():
        if template == "index.html":
            return await front_page_vars(datasette)
        if template == "row-catalog-articles.html":
            return await article_page_vars(datasette, request)
        if template.startswith("query-catalog"):
            return await query_page_vars(datasette, request, template)
        if view_name == "table" and database == DATABASE:
            return await table_page_vars(datasette, table, request, columns)
        return {}

    return inner


# -- complete paging --------------------------------------------------------------------------
# Datasette 0.65 (and 1.0a) orders a table's first page by the sort column alone and later
# pages by the sort column and the primary key, so rows that tie on the sort column (thousands
# of records share a pub_date) are skipped or repeated at page boundaries: in "stream all rows"
# CSV, in JSON next_url paging and in the HTML "Next page". Every table page of the catalog's
# tables here orders its first page by (sort column, primary key) too, as its later pages do.

_TABLE_PAGE: contextvars.ContextVar = contextvars.ContextVar("catalog_table_page", default=None)
_FIRST_PAGE = re.compile(
    r"^(?P<head>select .+? from (?P<table>\S+) (?:where .+ )?order by (?P<term>[^,()]+?))"
    r"(?P<tail> limit \d+)$",
    re.S | re.I,
)


def tie_broken(sql: str, table: str, pks: list[str]) -> str:
    """A table page's SQL ordered by its sort column alone, with the primary key appended
    (as Datasette orders the pages after the first); any other SQL unchanged."""
    match = _FIRST_PAGE.match(sql.strip())
    if not match or match["table"] != escape_sqlite(table):
        return sql
    column = match["term"].strip()
    column = re.sub(r"\s+desc$", "", column, flags=re.I).strip()
    if [column] == [escape_sqlite(pk) for pk in pks]:  # the key itself: already unique
        return sql
    return f"{match['head']}, {', '.join(escape_sqlite(pk) for pk in pks)}{match['tail']}"


_COMPARED = re.compile(r"(\[[^\]]+\]|\"[^\"]+\"|\w+) (?:>|<|=) :(p\d+)\b")


def typed_token_values(sql: str, params, untyped: set[str]):
    """`params` with the next-page token's values that read as integers passed as integers where
    they are compared with a column of no declared type. Datasette's token carries every value
    as text, and in such a column (the summary tables' `value`: years as integers, names as
    text) text sorts after every integer: the later pages skipped the rest of the integers."""
    if not isinstance(params, dict) or not untyped:
        return params
    out = dict(params)
    for column, name in _COMPARED.findall(sql):
        value = out.get(name)
        if column in untyped and isinstance(value, str) and re.fullmatch(r"-?\d{1,18}", value):
            out[name] = int(value)
    return out


def complete_paging(db) -> None:
    """Route `db.execute` through `tie_broken` while a table page of `db` is being served."""
    if getattr(db, "_catalog_complete_paging", False):
        return
    execute = db.execute
    keys: dict[str, list[str]] = {}
    untyped: dict[str, set[str]] = {}

    async def execute_tie_broken(sql, params=None, *args, **kwargs):
        table = _TABLE_PAGE.get()
        if table is not None and isinstance(sql, str) and " order by " in sql.lower():
            if table not in keys:
                pks = await db.primary_keys(table)
                keys[table] = pks or ([] if table in await db.view_names() else ["rowid"])
                untyped[table] = {
                    escape_sqlite(c.name) for c in await db.table_column_details(table) if not (c.type or "").strip()
                }
            if keys[table]:
                sql = tie_broken(sql, table, keys[table])
                params = typed_token_values(sql, params, untyped[table])
        return await execute(sql, params, *args, **kwargs)

    db.execute = execute_tie_broken
    db._catalog_complete_paging = True


@hookimpl(specname="startup")
def complete_paging_at_startup(datasette):
    db = _catalog_db(datasette)
    if db is not None:
        complete_paging(db)


# -- request checks ---------------------------------------------------------------------------
# Before Datasette runs anything: a sort by a column the table does not have, a facet name
# the catalog does not know, or a question's parameter in a form it cannot read answers 400
# with a message naming what was wrong and what is accepted (Datasette answers 500, or runs
# the query and says "No rows"). Reference-manager exports of a table take the whole list.

REFERENCE_FORMATS = ("ris", "bib", "csljson")


class BadParameter(ValueError):
    pass


_DATE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$")
# A start time as harvest_runs writes it; a "+" left unencoded in a URL arrives as a space.
_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(Z|[ +-]\d{2}:?\d{2})?$")
_RUN = re.compile(r"^(?:run\s*[:#]?\s*|#)(\d+)$", re.I)
SINCE_FORMS = (
    "a date (2026-12-04, also 2026/12/04 or 2026-12-4), a harvest start time "
    "(2026-12-04T06:00:00+00:00), a run id written run:12 or #12, or empty"
)


def normalize_since(value: str) -> str:
    """`since` as the questions read it: "" (the default), "YYYY-MM-DD", a start time, or "run:N"."""
    value = value.strip()
    if not value:
        return ""
    run = _RUN.match(value)
    if run:
        return f"run:{int(run.group(1))}"
    date = _DATE.match(value)
    if date:
        import datetime as dt

        try:
            return dt.date(*map(int, date.groups())).isoformat()
        except ValueError:
            raise BadParameter(f"{value!r} is not a date on the calendar") from None
    stamp = _TIMESTAMP.match(value)
    if stamp:
        day, time, zone = stamp.groups()
        return f"{day}T{time}" + (zone or "").replace(" ", "+")
    if value.isdecimal():
        raise BadParameter(
            f"{value!r} could be a year or a run id: write a run id as run:{value} "
            f"(or #{value}), a date as {value if len(value) == 4 else '2026'}-01-01"
        )
    raise BadParameter(f"{value!r} is neither a date nor a run id")


def normalize_count(value: str) -> str:
    value = value.strip()
    if not value:
        return ""
    if not value.isdecimal() or int(value) < 1:
        raise BadParameter(f"{value!r} is not a whole number of 1 or more")
    return str(int(value))


RETRACTION_STATUSES = (
    "Retracted",
    "Retraction notice",
    "Erratum published",
    "Expression of concern",
    "Updated version published",
    "Corrected and republished",
)


def _one_of(value: str, allowed, what: str) -> str:
    value = value.strip()
    if not value:
        return ""
    by_key = {str(a).lower().replace("_", " "): a for a in allowed}
    key = value.lower().replace("_", " ")
    if key in by_key:
        return str(by_key[key])
    raise BadParameter(f"{value!r} is not {what}")


def _harvest_module(name: str):
    if export is None:
        return None
    try:
        return __import__(f"harvest.{name}", fromlist=["_"])
    except ImportError:
        return None


async def design_values(db) -> list[str]:
    tags = _harvest_module("tags")
    if tags is not None:
        return list(tags.DESIGNS)
    rows = await db.execute("select distinct value from article_tags where facet = 'design' order by 1")
    return [r[0] for r in rows.rows]


async def _distinct(db, sql) -> list[str]:
    return [r[0] for r in (await db.execute(sql)).rows if r[0] is not None]


# Each parameter of the catalog's questions: how a value is checked (and written the one way
# the SQL reads it), and the accepted forms a 400 names. `None` as the check: free text (a
# search, a substance name), which the SQL takes as it comes. Keyed by parameter name; a
# question may override one name with its own rule (QUESTION_PARAMS).
async def _check_design(db, value, extra=()):
    designs = await design_values(db)
    return _one_of(value, [*extra, *designs], "a study design")


async def _check_registry(db, value):
    known = await _distinct(db, "select distinct registry from trial_registrations order by 1")
    return _one_of(value, known, "a registry with records in the catalog")


async def _check_trial_id(db, value):
    value = value.strip()
    if value and not (re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9/_.-]{3,40}", value) and re.search(r"\d", value)):
        raise BadParameter(f"{value!r} is not a trial registration number")
    return value


async def _check_mesh_term(db, value):
    value = value.strip()
    if not value:
        return ""
    rows = await db.execute(
        "select name from mesh_descriptors where name = :name collate nocase limit 1", {"name": value}
    )
    if not rows.rows:
        raise BadParameter(f"no record in the catalog is indexed with a MeSH heading named {value!r}")
    return rows.rows[0][0]


async def _since(db, value):
    return normalize_since(value)


async def _count(db, value):
    return normalize_count(value)


async def _status(db, value):
    return _one_of(value, RETRACTION_STATUSES, "a retraction or correction status")


async def _free_text(db, value):
    return value


async def _months(db, value):
    value = value.strip()
    if not value:
        return ""
    if not value.isdecimal() or int(value) > 1200:
        raise BadParameter(f"{value!r} is not a whole number of months (0 to 1200)")
    return str(int(value))


_MONTH = re.compile(r"^(\d{4})[-/](\d{1,2})$")


async def _month(db, value):
    value = value.strip()
    if not value:
        return ""
    month = _MONTH.match(value)
    if not month or not 1 <= int(month.group(2)) <= 12:
        raise BadParameter(f"{value!r} is not a month")
    return f"{int(month.group(1)):04d}-{int(month.group(2)):02d}"


# The molecules and routes the tagger gives, in the records' tags and the trials' interventions.
TRIAL_TAG_VALUES = """
    with recursive parts(value, rest) as (
      select '', {column} || ', ' from trial_interventions where coalesce({column}, '') != ''
      union all
      select substr(rest, 1, instr(rest, ', ') - 1), substr(rest, instr(rest, ', ') + 2) from parts where rest != '')
    select value from parts where value != ''
    union select value from article_tags where facet = '{facet}'"""


async def _trial_tag(db, value, facet: str, what: str):
    if not value.strip():
        return ""
    known = await _distinct(db, TRIAL_TAG_VALUES.format(column=facet + "s", facet=facet))
    return _one_of(value, known, what)


PARAM_RULES = {
    "since": (_since, SINCE_FORMS),
    "min_trials": (_count, "a whole number of 1 or more, or empty for 1"),
    "status": (_status, "one of " + ", ".join(RETRACTION_STATUSES) + " (any case), or empty for all"),
    "design": (
        _check_design,
        "a study design (rct, crossover_rct, systematic_review, observational_cohort, ...), or empty",
    ),
    "registry": (_check_registry, "a registry name (ClinicalTrials.gov, ISRCTN, EudraCT, ...), or empty"),
    "trial_id": (_check_trial_id, "a registration number such as NCT04209296 or ISRCTN12345678, or empty"),
    "term": (
        _check_mesh_term,
        "a MeSH heading of the catalog's records (e.g. Depression, Suicidal Ideation), or empty",
    ),
    "q": (_free_text, "search words"),
    "topic": (_free_text, "search words, or empty"),
    "molecule": (_free_text, "a ketamine form or any substance name, or empty"),
    "months": (_months, "a whole number of months (0 to 1200), or empty for 12"),
    "month": (_month, "a month written 2026-03, or empty for this month"),
}
SEARCH_KINDS = ("peer-reviewed", "preprint")  # the search's `kind`, as catalog_records.kind names them
KETAMINE_FORMS = (
    "racemic_ketamine",
    "esketamine",
    "arketamine",
    "hydroxynorketamine_metabolites",
    "unspecified_ketamine",
)


async def _search_kind(db, value):
    return _one_of(value, SEARCH_KINDS, "a kind of record")


async def _ketamine_form(db, value):
    return _one_of(value, KETAMINE_FORMS, "a ketamine form")


QUESTION_PARAMS = {
    ("most_cited_rcts_by_molecule", "molecule"): (
        _ketamine_form,
        "a ketamine form (" + ", ".join(KETAMINE_FORMS) + "; spaces or underscores, any case), or empty",
    ),
    ("trials_ongoing_by_molecule", "molecule"): (
        lambda db, value: _trial_tag(db, value, "molecule", "a molecule the catalog's tags know"),
        "a molecule tag (racemic_ketamine, esketamine, arketamine, unspecified_ketamine, ...), or empty",
    ),
    ("trials_ongoing_by_molecule", "route"): (
        lambda db, value: _trial_tag(db, value, "route", "a route the catalog's tags know"),
        "a route tag (intravenous, intranasal, oral, ...), or empty",
    ),
    ("search", "kind"): (
        _search_kind,
        "peer-reviewed (PubMed records), preprint (Europe PMC), or empty for both",
    ),
    ("esketamine_trials", "design"): (
        lambda db, value: _check_design(db, value, extra=("any", "randomised")),
        "randomised (the default), any, or one study design (open_label_trial, observational_cohort, ...)",
    ),
}


def param_rule(question: str, param: str):
    return QUESTION_PARAMS.get((question, param)) or PARAM_RULES.get(param)


_PARAMS = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class BadRequestError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


async def check_question(datasette, db, name: str, args: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """The question's query-string arguments with its parameters written as its SQL reads them
    (None when nothing changed); BadRequestError naming the first parameter it cannot read."""
    queries = await datasette.get_canned_queries(DATABASE, None)
    query = queries.get(name)
    if query is None:
        return None
    params = query.get("params") or _PARAMS.findall(query.get("sql") or "")
    changed, out = False, []
    for key, value in args:
        rule = param_rule(name, key) if key in params else None
        if rule is not None:
            check, forms = rule
            try:
                new = await check(db, value)
            except BadParameter as e:
                raise BadRequestError(f"{name}: parameter {key}: {e}. Accepted: {forms}.") from None
            if new != value:
                changed, value = True, new
        out.append((key, value))
    return out if changed else None


MAX_FACET_VALUES = 50  # chosen facet values on one page (each is a subquery of the page's SQL)


def _sqlite_integer(digits: str) -> bool:
    return digits.isdecimal() and len(digits) <= 19 and int(digits) < 2**63


def _check_datasette_args(args: list[tuple[str, str]]) -> None:
    """Arguments Datasette 0.65 reads without checking, answering 500 on a malformed one."""
    import json

    for key, value in args:
        if "\x00" in key or "\x00" in value:
            raise BadRequestError(f"{key[:40]!r}: a NUL character is in the request.")
        if key.endswith(("__gt", "__gte", "__lt", "__lte")) and value.isdigit() and not _sqlite_integer(value):
            # Datasette 0.65 takes isdigit() for int(): '²⁰¹⁹' and 10**30 answered 500.
            raise BadRequestError(f"{key}: {value[:40]!r} is not a number SQLite can compare.")
        if key == "_timelimit" and not (value.isascii() and value.isdigit()):
            raise BadRequestError(f"_timelimit: {value[:40]!r} is not a number of milliseconds.")
        if key.endswith(("__in", "__notin")) and value.startswith("["):
            try:
                listed = json.loads(value)
            except ValueError:
                listed = None
            if not isinstance(listed, list):
                raise BadRequestError(f"{key}: {value[:40]!r} is not a JSON list; or give the values comma-separated.")


async def check_table(datasette, db, table: str, args: list[tuple[str, str]]) -> None:
    _check_datasette_args(args)
    import json

    for key, value in args:
        if key == "_through":  # Datasette 0.65 reads it unchecked too
            try:
                through = json.loads(value)
            except ValueError:
                through = None
            if not (isinstance(through, dict) and {"table", "column", "value"} <= set(through)):
                raise BadRequestError('_through: give JSON {"table": ..., "column": ..., "value": ...}.')
            other = str(through["table"])
            if other not in await _table_names(db):
                raise BadRequestError(f"_through: no table named {other[:40]!r}.")
            columns = {c.name for c in await db.table_column_details(other)}
            if str(through["column"]) not in columns:
                raise BadRequestError(f"_through: {other} has no column {str(through['column'])[:40]!r}.")
    sort = [(k, v) for k, v in args if k in ("_sort", "_sort_desc")]
    if len(sort) > 1:
        raise BadRequestError("Sort by one column: give _sort (ascending) or _sort_desc (descending), not both.")
    if sort:
        key, column = sort[0]
        metadata = datasette.table_metadata(DATABASE, table) or {}
        sortable = metadata.get("sortable_columns")
        if sortable is None:  # every column but a binary one (its next-page token would be the bytes)
            sortable = [c.name for c in await db.table_column_details(table) if (c.type or "").upper() != "BLOB"]
            if not await db.primary_keys(table) and table not in await db.view_names():
                sortable = ["rowid", *sortable]
        if column not in sortable:
            raise BadRequestError(
                f"{key}: {table} has no column {column!r} to sort by; sort by one of: {', '.join(sortable)}."
            )
    next_token = next((v for k, v in args if k == "_next"), None)
    if next_token is not None and table in await db.view_names() and not _sqlite_integer(next_token):
        raise BadRequestError(f"_next: {next_token[:40]!r} is not a row offset; follow the page's next link.")
    if table == "articles":
        names = await facet_sources(datasette)
        chosen = {(k, v) for k, v in args if k.startswith("_") and k[1:] in names}
        if len(chosen) > MAX_FACET_VALUES:
            raise BadRequestError(f"Choose at most {MAX_FACET_VALUES} facet values at once ({len(chosen)} given).")
        for key, value in args:
            if key == "_facet_catalog" and value not in names:
                raise BadRequestError(
                    f"_facet_catalog: no facet named {value!r}; the facets are: "
                    + "; ".join(f"{n} ({s['label']})" for n, s in names.items())
                    + "."
                )


def _path_parts(path: str):
    """(database, name, format) of /db/name[.format], else None."""
    from datasette.utils import tilde_decode

    parts = path.split("/")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        return None
    name, _, fmt = parts[2].partition(".")
    return tilde_decode(parts[1]), tilde_decode(name), fmt


async def _bad_request(datasette, scope, send, fmt: str, message: str, status: int = 400) -> None:
    title = "Not found" if status == 404 else "Bad request"
    if fmt in ("json", ""):
        if fmt == "json":
            response = Response.json({"ok": False, "error": message, "status": status, "title": title}, status=status)
        else:
            from datasette.utils.asgi import Request

            page = await datasette.render_template(
                "error.html",
                {"ok": False, "error": message, "status": status, "title": title},
                request=Request({**scope, "csrftoken": lambda: ""}, None),
            )
            response = Response.html(page, status=status)
    else:
        response = Response.text(message + "\n", status=status)
    await response.asgi_send(send)


def _database_path_format(path: str) -> str | None:
    """The format of /catalog[.format] ("" for the page), else None."""
    name, dot, fmt = path.removeprefix("/").partition(".")
    return fmt if name == DATABASE and "/" not in path.removeprefix("/") else None


def _article_row_key(path: str) -> tuple[str, str] | None:
    """(the key as given, format) of /catalog/articles/KEY[.format], else None."""
    from datasette.utils import tilde_decode

    parts = path.split("/")
    if len(parts) != 4 or parts[1] != DATABASE or parts[2] != "articles" or not parts[3]:
        return None
    key, _, fmt = parts[3].partition(".")
    return tilde_decode(key), fmt


@hookimpl(specname="asgi_wrapper", tryfirst=True)
def check_requests(datasette):
    """Innermost wrapper (the security headers wrap its answers too)."""
    from urllib.parse import parse_qsl, urlencode

    def wrap(app):
        async def checked(scope, receive, send):
            row = _article_row_key(scope.get("path", "")) if scope["type"] == "http" else None
            if row is not None and not (row[0].isascii() and row[0].isdigit()):
                # SQLite would find /articles/1e3 as row 1000 (its integer affinity), the page not.
                message = f"No such record: {row[0][:40]!r} is not a PMID (PMIDs are written in digits)."
                return await _bad_request(datasette, scope, send, row[1], message, status=404)
            parts = _path_parts(scope.get("path", "")) if scope["type"] == "http" else None
            db = _catalog_db(datasette)
            database_fmt = _database_path_format(scope.get("path", "")) if scope["type"] == "http" else None
            if database_fmt is not None and db is not None:  # /catalog[.fmt]: SQL typed by hand
                args = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
                try:
                    _check_datasette_args(args)
                    if database_fmt == "csv" and not any(k == "sql" and v.strip() for k, v in args):
                        raise BadRequestError("A CSV of the database is the answer to a query: give ?sql=.")
                except BadRequestError as e:
                    return await _bad_request(datasette, scope, send, database_fmt, e.message)
                return await app(scope, receive, send)
            if parts is None or parts[0] != DATABASE or db is None:
                return await app(scope, receive, send)
            _, name, fmt = parts
            await datasette.invoke_startup()  # (once) before the first request's checks use it
            args = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            table = name if name in await _table_names(db) else None
            try:
                if table is not None:
                    await check_table(datasette, db, table, args)
                    # A reference manager takes the whole list (up to max_returned_rows), not a page.
                    if fmt in REFERENCE_FORMATS and not any(k == "_size" for k, _ in args):
                        args = [*args, ("_size", "max")]
                        scope = {**scope, "query_string": urlencode(args).encode("latin-1")}
                else:
                    _check_datasette_args(args)
                    rewritten = await check_question(datasette, db, name, args)
                    if rewritten is not None:
                        scope = {**scope, "query_string": urlencode(rewritten).encode("latin-1")}
            except BadRequestError as e:
                return await _bad_request(datasette, scope, send, fmt, e.message)
            token = _TABLE_PAGE.set(table)
            try:
                await app(scope, receive, send)
            finally:
                _TABLE_PAGE.reset(token)

        return checked

    return wrap


_tables_cache: dict[int, tuple[float, set]] = {}


async def _table_names(db) -> set:
    """The database's tables and views (re-read when the file changes)."""
    import os

    try:
        mtime = os.stat(db.path).st_mtime if db.path else 0.0
    except OSError:
        mtime = 0.0
    cached = _tables_cache.get(id(db))
    if cached is None or cached[0] != mtime:
        names = set(await db.table_names()) | set(await db.view_names())
        cached = (mtime, names)
        _tables_cache[id(db)] = cached
    return cached[1]
