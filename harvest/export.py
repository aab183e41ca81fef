"""Catalog records into reference-manager formats: RIS, BibTeX and CSL-JSON.

Owns the mapping from stored catalog rows to citation formats. `load_records`
(PubMed records, by PMID) and `load_preprint_records` (Europe PMC preprints, by PPR id)
read the catalog (any DB-API connection, or a sqlite_utils Database) into plain
citation dicts of one shape; `to_ris`, `to_bibtex` and `to_csl_json` are pure functions of
those dicts. The Datasette output renderers (db/plugins/catalog.py) and the
`python -m harvest export` command both go through `render`.
Must never: write to the catalog, or talk to the network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

FORMATS = ("ris", "bibtex", "csl-json")
MEDIA_TYPES = {
    "ris": "application/x-research-info-systems; charset=utf-8",
    "bibtex": "application/x-bibtex; charset=utf-8",
    "csl-json": "application/vnd.citationstyles.csl+json; charset=utf-8",
}
FILE_EXTENSIONS = {"ris": "ris", "bibtex": "bib", "csl-json": "json"}

PUBMED_URL = "https://pubmed.ncbi.nlm.nih.gov/{}/"
PMC_URL = "https://pmc.ncbi.nlm.nih.gov/articles/{}/"
EUROPEPMC_PREPRINT_URL = "https://europepmc.org/article/PPR/{}"
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


# -- reading the catalog --------------------------------------------------------------


def _rows(conn, sql: str, params: Sequence = ()) -> list[dict]:
    cursor = conn.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _split(joined: str | None) -> list[str]:
    return [part.strip() for part in (joined or "").split(";") if part.strip()]


def _chunks(values: list, size: int = 500):
    for i in range(0, len(values), size):
        yield values[i : i + size]


def load_records(conn, pmids: Iterable[int]) -> list[dict]:
    """Citation dicts for `pmids`, in the order given; PMIDs not in the catalog are skipped."""
    order = list(dict.fromkeys(int(p) for p in pmids))
    articles: dict[int, dict] = {}
    people: dict[int, dict[str, list[dict]]] = {}
    for chunk in _chunks(order):
        marks = ",".join("?" * len(chunk))
        for row in _rows(conn, f"select * from articles where pmid in ({marks})", chunk):
            articles[row["pmid"]] = row
        for row in _rows(
            conn,
            f"""
            select aa.pmid, aa.role, au.last_name, au.fore_name, au.initials, au.suffix,
                   au.collective_name
            from article_authors aa join authors au on au.id = aa.author_id
            where aa.pmid in ({marks}) and coalesce(aa.valid, 1) != 0
            order by aa.pmid, aa.role, aa.position""",
            chunk,
        ):
            people.setdefault(row["pmid"], {}).setdefault(row["role"], []).append(row)
    return [citation(articles[p], people.get(p, {})) for p in order if p in articles]


def load_preprint_records(conn, ppr_ids: Iterable[str]) -> list[dict]:
    """Citation dicts for the preprints `ppr_ids`, in the order given; ids not stored are skipped."""
    order = list(dict.fromkeys(str(p) for p in ppr_ids))
    found: dict[str, dict] = {}
    for chunk in _chunks(order):
        marks = ",".join("?" * len(chunk))
        for row in _rows(conn, f"select * from preprints where ppr_id in ({marks})", chunk):
            found[row["ppr_id"]] = row
    return [preprint_citation(found[p]) for p in order if p in found]


_INITIALS = re.compile(r"[A-Z\u00C0-\u00DE]{1,4}")


def split_short_name(name: str | None) -> tuple[str | None, str | None]:
    """Europe PMC's and PubMed's short form of a name, "van Duijnhoven FJ", as (surname,
    initials); a name that does not end in initials (a consortium) as (the name, None)."""
    parts = (name or "").strip().rstrip(".").split()
    if len(parts) > 1 and _INITIALS.fullmatch(parts[-1]):
        return " ".join(parts[:-1]), parts[-1]
    return " ".join(parts) or None, None


def preprint_person(name: str) -> dict:
    """A preprint author as a CSL name: family and initials, or a literal (a consortium)."""
    family, initials = split_short_name(name)
    if family and initials:
        return {"family": family, "given": initials}
    return {"literal": name.strip()}


def preprint_citation(row: dict) -> dict:
    """One stored preprint as a citation dict of the shape `citation` returns (no PMID, no
    journal: `type` "preprint", the server and version, Europe PMC's page as its URL)."""
    # The year is Europe PMC's pubYear (the catalog's pub_year); the day it was first posted
    # adds month and day where it falls in that year.
    posted = [int(part) for part in (row.get("first_publication_date") or "").split("-")[:3] if part.isdecimal()]
    year = row.get("pub_year") or (posted[0] if posted else None)
    date = posted if posted and posted[0] == year else ([int(year)] if year else [])
    return {
        "pmid": None,
        "ppr_id": row["ppr_id"],
        "type": "preprint",
        "title": (row.get("title") or "").strip(),
        "abstract": row.get("abstract"),
        "journal": None,
        "journal_abbrev": None,
        "volume": None,
        "issue": None,
        "pages": None,
        "date_parts": date,
        "doi": row.get("doi"),
        "pmcid": None,
        "issn": None,
        "languages": [],
        "publication_types": ["Preprint"],
        "keywords": _split(row.get("keywords")),
        "mesh_terms": [],
        "authors": [preprint_person(a) for a in (row.get("authors") or "").split(";") if a.strip()],
        "editors": [],
        "retracted": False,
        "url": EUROPEPMC_PREPRINT_URL.format(row["ppr_id"]),
        "server": row.get("server"),
        "version": row.get("version"),
        "published_pmid": row.get("published_pmid"),
    }


def preprint_note(record: dict) -> str:
    """What a reader must know of a preprint: "Preprint (not peer reviewed), medRxiv, version 2;
    published as PMID 12345678"."""
    note = "Preprint (not peer reviewed)"
    if record.get("server"):
        note += f", {record['server']}"
    if record.get("version"):
        note += f", version {record['version']}"
    if record.get("published_pmid"):
        note += f"; published as PMID {record['published_pmid']}"
    return note


def _person(row: dict) -> dict:
    if row.get("collective_name"):
        return {"literal": row["collective_name"]}
    person = {"family": row.get("last_name") or ""}
    given = row.get("fore_name") or row.get("initials")
    if given:
        person["given"] = given
    if row.get("suffix"):
        person["suffix"] = row["suffix"]
    return person


def date_parts(pub_date: str | None, pub_date_raw: str | None, pub_year: int | None) -> list[int]:
    """[year], [year, month] or [year, month, day], as precise as PubMed's own date is.

    The catalog's `pub_date` fills a missing month or day with 01; `pub_date_raw`
    ("2021 May 11", "1975 Sep", "2021 Jan-Feb", "2020 Spring") says what was there.
    """
    raw = (pub_date_raw or "").split()
    year = pub_year
    if year is None and raw and raw[0][:4].isdecimal():
        year = int(raw[0][:4])
    if year is None and pub_date:
        year = int(pub_date[:4])
    if year is None:
        return []
    parts = [int(year)]
    if len(raw) > 1 and raw[1][:3].lower() in _MONTHS:
        parts.append(_MONTHS.index(raw[1][:3].lower()) + 1)
        if len(raw) > 2 and raw[2].isdecimal() and 1 <= int(raw[2]) <= 31:
            parts.append(int(raw[2]))
    return parts


def split_pages(pages: str | None) -> tuple[str | None, str | None]:
    """MEDLINE's abbreviated page range "739-48" -> ("739", "748"); "e2305772120" -> (it, None)."""
    if not pages:
        return None, None
    first = re.split(r"[,;]", pages)[0].strip()
    start, sep, end = first.partition("-")
    start, end = start.strip(), end.strip()
    if not sep or not end:
        return start or None, None
    if start.isdecimal() and end.isdecimal() and len(end) < len(start):
        end = start[: len(start) - len(end)] + end
    return start, end


def citation(article: dict, people: dict[str, list[dict]] | None = None) -> dict:
    """One catalog row (plus its authors and editors by role) as a plain citation dict."""
    people = people or {}
    pmid = int(article["pmid"])
    return {
        "pmid": pmid,
        "type": "book" if article.get("is_book") else "article",
        # PubMed ends every title with a period; citation styles add their own punctuation.
        # Where PubMed gives no English title, the original-language one (VernacularTitle).
        "title": re.sub(r"(?<!\.)\.$", "", (article.get("title") or article.get("vernacular_title") or "").strip()),
        "abstract": article.get("abstract"),
        "journal": article.get("journal"),
        "journal_abbrev": article.get("journal_iso"),
        "volume": article.get("volume"),
        "issue": article.get("issue"),
        "pages": article.get("pages"),
        "date_parts": date_parts(article.get("pub_date"), article.get("pub_date_raw"), article.get("pub_year")),
        "doi": article.get("doi"),
        "pmcid": article.get("pmcid"),
        "issn": article.get("issn_print") or article.get("issn_electronic") or article.get("issn_linking"),
        "languages": _split(article.get("language")),
        "publication_types": _split(article.get("publication_types")),
        "keywords": _split(article.get("keywords")),
        "mesh_terms": _split(article.get("mesh_terms")),
        "authors": [_person(r) for r in people.get("author", [])],
        "editors": [_person(r) for r in people.get("editor", [])],
        "retracted": bool(article.get("is_retracted")),
        "url": PUBMED_URL.format(pmid),
    }


# -- formats ----------------------------------------------------------------------------


def citation_key(record: dict) -> str:
    return f"pmid{record['pmid']}" if record.get("pmid") is not None else str(record["ppr_id"])


def _name_inverted(person: dict) -> str:
    if "literal" in person:
        return person["literal"]
    name = person.get("family", "")
    if person.get("given"):
        name += ", " + person["given"]
    if person.get("suffix"):
        name += ", " + person["suffix"]
    return name


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def to_ris(records: Iterable[dict]) -> str:
    """RIS (the tagged format EndNote, Zotero, Mendeley and RefWorks import)."""
    out: list[str] = []
    for r in records:
        preprint = r["type"] == "preprint"
        ris_type = {"book": "BOOK", "preprint": "UNPB"}.get(r["type"], "JOUR")  # UNPB: unpublished work
        lines: list[tuple[str, str]] = [("TY", ris_type)]
        lines += [("AU", _name_inverted(p)) for p in r["authors"]]
        lines += [("A2", _name_inverted(p)) for p in r["editors"]]
        lines.append(("TI", _one_line(r["title"])))
        if r["journal"]:
            lines.append(("T2", r["journal"]))
        if r["journal_abbrev"]:
            lines.append(("J2", r["journal_abbrev"]))
        if preprint and r.get("server"):
            lines.append(("PB", r["server"]))
        parts = r["date_parts"]
        if parts:
            lines.append(("PY", str(parts[0])))
            lines.append(("DA", "/".join([f"{parts[0]:04d}"] + [f"{p:02d}" for p in parts[1:]]) + "/"))
        for tag, key in (("VL", "volume"), ("IS", "issue")):
            if r[key]:
                lines.append((tag, str(r[key])))
        start, end = split_pages(r["pages"])
        if start:
            lines.append(("SP", start))
        if end:
            lines.append(("EP", end))
        if r["issn"]:
            lines.append(("SN", r["issn"]))
        if r["abstract"]:
            lines.append(("AB", _one_line(r["abstract"])))
        lines += [("KW", k) for k in r["keywords"]]
        lines += [("KW", m) for m in r["mesh_terms"] if m not in r["keywords"]]
        lines += [("LA", lang) for lang in r["languages"]]
        if r["publication_types"]:
            lines.append(("M3", "; ".join(r["publication_types"])))
        if r["doi"]:
            lines.append(("DO", r["doi"]))
        lines.append(("AN", str(r["ppr_id"] if preprint else r["pmid"])))
        if r["pmcid"]:
            lines.append(("C2", r["pmcid"]))
        lines.append(("DB", "Europe PMC" if preprint else "PubMed"))
        lines.append(("DP", "EMBL-EBI" if preprint else "NLM"))
        lines.append(("UR", r["url"]))
        if preprint:
            lines.append(("N1", preprint_note(r)))
        if r["retracted"]:
            lines.append(("N1", "Retracted publication: PubMed links a retraction notice to this article."))
        lines.append(("ER", ""))
        out.append(
            "\n".join(f"{tag}  - {_one_line(value)}".rstrip() + ("" if tag != "ER" else " ") for tag, value in lines)
        )
    return "\n\n".join(out) + ("\n" if out else "")


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "%": r"\%",
    "&": r"\&",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    # "--" and "---" are dash ligatures in LaTeX: "-{}-" keeps the hyphens the record has.
    "-": "-{}",
}
_LATEX_SPECIAL = re.compile(r"[\\%&$#_~^{}]|-(?=-)")


def _paired_braces(text: str) -> set[int]:
    """Positions of the braces in `text` that pair up with another."""
    paired: set[int] = set()
    opened: list[int] = []
    for i, ch in enumerate(text):
        if ch == "{":
            opened.append(i)
        elif ch == "}" and opened:
            paired.update((opened.pop(), i))
    return paired


def bibtex_escape(text: str) -> str:
    """Text safe inside a braced BibTeX field, read back as the same text by LaTeX: specials
    escaped, dash ligatures broken, one line, UTF-8 kept. Braces: BibTeX, biber and bibtexparser
    count `\\{` and `\\}` as group braces, so only braces that pair up are written `\\{ \\}`;
    an unpaired one is `\\textbraceleft{}` / `\\textbraceright{}`, and no reader sees the
    field, or the entry, end early (pandoc 2.17 reads those two as nothing)."""
    text = _one_line(text)
    paired = _paired_braces(text) if ("{" in text or "}" in text) else set()

    def replace(m: re.Match) -> str:
        ch = m.group()
        if ch in "{}":
            if m.start() in paired:
                return "\\" + ch
            return r"\textbraceleft{}" if ch == "{" else r"\textbraceright{}"
        return _LATEX_SPECIALS[ch]

    return _LATEX_SPECIAL.sub(replace, text)


def bibtex_verbatim(text: str | None) -> str | None:
    """A verbatim field (doi, url) as biblatex, biber and pandoc read it: raw, since an escape
    would become part of the value (`10.1111/jpc.1\\_15346`). None for a value that would end
    the field or the entry (a brace, a backslash that could escape one, a line break): it is
    left out rather than written broken."""
    if not text or re.search(r"[{}\\\x00-\x1f\x7f]", text):
        return None
    return text


def bibtex_identifier(text: str | None) -> str | None:
    """An identifier field (issn, pmcid): pandoc reads these raw, LaTeX as text, so one is
    written only when both read the same (no special character, one line): every real ISSN
    and PMCID. None otherwise: left out rather than read two ways."""
    if not text or bibtex_escape(text) != text:
        return None
    return text


def _bib_part(text: str) -> str:
    """One part of a person's name, braced where BibTeX's name grammar would take it apart:
    a comma starts a new part, an "and" a new person."""
    escaped = bibtex_escape(text)
    if "," in escaped or re.search(r"(?i)(^|\s)and(\s|$)", escaped):
        return "{" + escaped + "}"
    return escaped


def _bib_name(person: dict) -> str:
    if "literal" in person:
        return "{" + bibtex_escape(person["literal"]) + "}"
    family = _bib_part(person.get("family", ""))
    if not person.get("given") and not person.get("suffix"):
        # Alone, "Kisov Khr" would be read as given name "Kisov", family name "Khr".
        return "{" + family + "}" if " " in family and not family.startswith("{") else family
    # BibTeX's order is "von Last, Jr, First" (RIS puts the suffix last).
    parts = [family] + ([_bib_part(person["suffix"])] if person.get("suffix") else [])
    return ", ".join(parts + [_bib_part(person.get("given", ""))])


def to_bibtex(records: Iterable[dict]) -> str:
    """BibTeX entries keyed `pmidNNN` (@article, @book), readable by BibTeX, biber and Zotero."""
    out: list[str] = []
    for r in records:
        fields: list[tuple[str, str]] = []
        if r["authors"]:
            fields.append(("author", " and ".join(_bib_name(p) for p in r["authors"])))
        if r["editors"]:
            fields.append(("editor", " and ".join(_bib_name(p) for p in r["editors"])))
        # Double braces keep PubMed's capitalisation (acronyms, gene names) through styles.
        fields.append(("title", "{" + bibtex_escape(r["title"]) + "}"))
        if r["journal"]:
            fields.append(("journal", bibtex_escape(r["journal"])))
        if r["type"] == "preprint" and r.get("server"):
            fields.append(("howpublished", bibtex_escape(r["server"])))
        parts = r["date_parts"]
        if parts:
            fields.append(("year", str(parts[0])))
        if len(parts) > 1:
            fields.append(("month", _MONTHS[parts[1] - 1]))  # a macro, written unbraced
        for name, key in (("volume", "volume"), ("number", "issue")):
            if r[key]:
                fields.append((name, bibtex_escape(str(r[key]))))
        start, end = split_pages(r["pages"])
        if start:
            fields.append(("pages", bibtex_escape(start) + (f"--{bibtex_escape(end)}" if end else "")))
        # doi and url are verbatim fields (biblatex, biber, pandoc): written raw; the rest is text.
        if bibtex_verbatim(r["doi"]):
            fields.append(("doi", r["doi"]))
        if bibtex_identifier(r["issn"]):
            fields.append(("issn", r["issn"]))
        if r["pmid"] is not None:
            fields.append(("pmid", str(r["pmid"])))
        if bibtex_identifier(r["pmcid"]):
            fields.append(("pmcid", r["pmcid"]))
        if bibtex_verbatim(r["url"]):
            fields.append(("url", r["url"]))
        if r["languages"]:
            fields.append(("language", bibtex_escape(", ".join(r["languages"]))))
        keywords = r["keywords"] + [m for m in r["mesh_terms"] if m not in r["keywords"]]
        if keywords:
            fields.append(("keywords", bibtex_escape(", ".join(keywords))))
        if r["abstract"]:
            fields.append(("abstract", bibtex_escape(r["abstract"])))
        if r["retracted"]:
            fields.append(("note", "Retracted publication"))
        if r["type"] == "preprint":
            fields.append(("note", bibtex_escape(preprint_note(r))))
        entry_type = {"book": "book", "preprint": "misc"}.get(r["type"], "article")
        body = ",\n".join(
            f"  {name} = {value}" if name == "month" else f"  {name} = {{{value}}}" for name, value in fields
        )
        out.append(f"@{entry_type}{{{citation_key(r)},\n{body}\n}}")
    return "\n\n".join(out) + ("\n" if out else "")


def csl_items(records: Iterable[dict]) -> list[dict]:
    """CSL-JSON items (what Zotero, Pandoc/citeproc and most CSL processors read)."""
    items = []
    for r in records:
        item: dict = {
            "id": citation_key(r),
            # CSL 1.0.2's "article" is "a preprint, working paper, or other article not published in a journal".
            "type": {"book": "book", "preprint": "article"}.get(r["type"], "article-journal"),
            "title": _one_line(r["title"]),
            "URL": r["url"],
        }
        if r["pmid"] is not None:
            item["PMID"] = str(r["pmid"])
        if r["type"] == "preprint":
            item["genre"] = "Preprint"
            item["note"] = preprint_note(r)
            if r.get("server"):
                item["publisher"] = r["server"]
            if r.get("version"):
                item["version"] = str(r["version"])
        if r["authors"]:
            item["author"] = r["authors"]
        if r["editors"]:
            item["editor"] = r["editors"]
        if r["journal"]:
            item["container-title"] = r["journal"]
        if r["journal_abbrev"]:
            item["container-title-short"] = r["journal_abbrev"]
        if r["date_parts"]:
            item["issued"] = {"date-parts": [r["date_parts"]]}
        for key, name in (
            ("volume", "volume"),
            ("issue", "issue"),
            ("doi", "DOI"),
            ("pmcid", "PMCID"),
            ("issn", "ISSN"),
            ("abstract", "abstract"),
        ):
            if r[key]:
                item[name] = str(r[key])
        start, end = split_pages(r["pages"])
        if start:
            item["page"] = f"{start}-{end}" if end else start
        if r["languages"]:
            item["language"] = r["languages"][0]
        keywords = r["keywords"] + [m for m in r["mesh_terms"] if m not in r["keywords"]]
        if keywords:
            item["keyword"] = ", ".join(keywords)
        if r["retracted"]:
            item["note"] = "Retracted publication"
        items.append(item)
    return items


def to_csl_json(records: Iterable[dict]) -> str:
    return json.dumps(csl_items(records), ensure_ascii=False, indent=2) + "\n"


_RENDERERS = {"ris": to_ris, "bibtex": to_bibtex, "csl-json": to_csl_json}


def render(records: Iterable[dict], fmt: str) -> str:
    """`records` (from `load_records`) in `fmt`, one of FORMATS."""
    try:
        return _RENDERERS[fmt](records)
    except KeyError:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}") from None


# -- choosing what to export (for the CLI) ------------------------------------------------


def select_pmids(
    conn, *, search: str | None = None, since: str | None = None, include_unmatched: bool = False
) -> list[int]:
    """PMIDs to export, newest first: all current records, or those a full-text `search`
    matches (FTS5 syntax, as typed on the catalog's search page), optionally only those
    first stored on or after `since` (YYYY-MM-DD)."""
    where = ["a.is_deleted = 0"]
    params: list = []
    if not include_unmatched:
        where.append("a.matches_query = 1")
    if search:
        where.append("a.pmid in (select rowid from articles_fts where articles_fts match ?)")
        params.append(search)
    if since:
        where.append("a.first_seen_run in (select id from harvest_runs where started_at >= ?)")
        params.append(since)
    sql = f"select a.pmid from articles a where {' and '.join(where)} order by a.pub_date desc, a.pmid desc"
    return [row["pmid"] for row in _rows(conn, sql, params)]


def export_catalog(
    conn, fmt: str, *, pmids: Iterable[int] | None = None, search: str | None = None, since: str | None = None
) -> str:
    """The whole export in one call: `pmids` if given, else what `select_pmids` picks."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    chosen = list(pmids) if pmids is not None else select_pmids(conn, search=search, since=since)
    return render(load_records(conn, chosen), fmt)
