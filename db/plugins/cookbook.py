"""The SQL cookbook as canned queries: every query of db/queries.sql at /catalog/<name>.

Owns reading `queries.sql` (the file beside this folder: db/queries.sql in the checkout,
TARGET_DIR/queries.sql in a published copy) into Datasette canned queries of the `catalog`
database through the `canned_queries` hook, so the cookbook needs no entry in metadata.yml.
The file is re-read when it changes. A query that metadata.yml also defines keeps the
metadata's version (a warning says so, unless the SQL is the same).
Must never: write to the database, or hide a broken cookbook: a file that does not parse
raises, naming the line.

`parse_queries(text)` and `load_cookbook(path)` are plain functions, used by the tests and
the notebooks as well.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from datasette import hookimpl

DATABASE = "catalog"
QUERIES_FILE = Path(__file__).resolve().parent.parent / "queries.sql"

log = logging.getLogger("datasette.cookbook")

_HEADER = re.compile(r"^--\s*(name|title|description|example):(.*)$")
_CONTINUATION = re.compile(r"^--\s{2,}(\S.*)$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class CookbookError(ValueError):
    pass


def parse_queries(text: str, source: str = "queries.sql") -> dict[str, dict]:
    """{name: {"title", "description", "sql", "params", "examples", "line"}} in file order.

    `examples` is a list of {param: value} dicts (each `-- example:` line one dict; values not
    given are empty, as Datasette sends them). `params` lists the SQL's `:named` parameters.
    """
    queries: dict[str, dict] = {}
    current: dict | None = None
    last_key: str | None = None
    in_header = False

    def finish() -> None:
        if current is None:
            return
        sql = "\n".join(current.pop("_lines")).strip().rstrip(";").strip()
        if not sql:
            raise CookbookError(f"{source}:{current['line']}: query {current['name']!r} has no SQL")
        if ";" in _strip_strings_and_comments(sql):
            raise CookbookError(f"{source}:{current['line']}: query {current['name']!r} holds more than one statement")
        current["sql"] = sql
        current["params"] = list(dict.fromkeys(_PARAM.findall(_strip_strings_and_comments(sql))))
        for example in current["examples"]:
            unknown = set(example) - set(current["params"])
            if unknown:
                raise CookbookError(f"{source}:{current['line']}: example names unknown parameters {sorted(unknown)}")
        if not current.get("title"):
            raise CookbookError(f"{source}:{current['line']}: query {current['name']!r} has no title")
        queries[current["name"]] = current

    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = _HEADER.match(stripped)
        if header and header.group(1) == "name":
            finish()
            name = header.group(2).strip()
            if not _NAME.match(name):
                raise CookbookError(f"{source}:{number}: bad query name {name!r} (lower case, digits, _)")
            if name in queries:
                raise CookbookError(f"{source}:{number}: query {name!r} is defined twice")
            current = {"name": name, "title": "", "description": "", "examples": [], "line": number, "_lines": []}
            last_key, in_header = None, True
            continue
        if current is None:
            continue  # the file's own introduction
        if in_header:
            if header:
                key, value = header.group(1), header.group(2).strip()
                if key == "example":
                    current["examples"].append(_parse_example(value, source, number))
                else:
                    current[key] = value
                last_key = key
                continue
            continuation = _CONTINUATION.match(line.rstrip())
            if continuation and last_key in ("title", "description"):
                current[last_key] += " " + continuation.group(1).strip()
                continue
            in_header = False
        current["_lines"].append(line)
    finish()
    return queries


def _parse_example(value: str, source: str, number: int) -> dict[str, str]:
    """`-- example: design=any; since=12` -> {"design": "any", "since": "12"} (values may hold spaces)."""
    example: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in value.split(";"))):
        key, sep, val = pair.partition("=")
        if not sep or not key.strip():
            raise CookbookError(f"{source}:{number}: example {pair!r} is not name=value")
        example[key.strip()] = val.strip()
    return example


def _strip_strings_and_comments(sql: str) -> str:
    sql = re.sub(r"'(?:[^']|'')*'", "''", sql)
    return re.sub(r"--[^\n]*", "", sql)


_cache: dict[str, tuple[float, dict]] = {}


def load_cookbook(path: Path | str | None = None) -> dict[str, dict]:
    """The parsed cookbook at `path` (default: $CATALOG_COOKBOOK, else queries.sql beside
    this folder), re-read only when the file changed."""
    path = Path(path or os.environ.get("CATALOG_COOKBOOK") or QUERIES_FILE)
    mtime = path.stat().st_mtime
    key = str(path)
    cached = _cache.get(key)
    if cached and cached[0] == mtime:
        return cached[1]
    queries = parse_queries(path.read_text(encoding="utf-8"), str(path))
    _cache[key] = (mtime, queries)
    return queries


def canned(query: dict) -> dict:
    """One cookbook entry as a Datasette canned query."""
    return {
        "sql": query["sql"],
        "title": query["title"],
        "description": query["description"],
        "params": query["params"],
    }


@hookimpl
def canned_queries(datasette, database, actor):
    if database != DATABASE:
        return None
    path = Path(os.environ.get("CATALOG_COOKBOOK") or QUERIES_FILE)
    if not path.is_file() and getattr(datasette, "config_dir", None):
        path = Path(datasette.config_dir) / "queries.sql"
    if not path.is_file():
        log.warning("no SQL cookbook at %s: its canned queries are missing", path)
        return None
    # Datasette 0.65 merges what this hook returns into its metadata dict in place, so on later
    # calls our own queries are found there too: only entries we did not put there are the
    # metadata's own.
    from_metadata = datasette.metadata("queries", database=DATABASE, fallback=False) or {}
    queries = {}
    for name, entry in _canned(path).items():
        theirs = from_metadata.get(name)
        if theirs is not None and id(theirs) not in _served:
            # A published copy may carry the cookbook in its metadata already: the same SQL is fine.
            if (theirs.get("sql") if isinstance(theirs, dict) else theirs) != entry["sql"] and name not in _warned:
                _warned.add(name)
                log.warning("canned query %r is defined in metadata and in %s: the metadata's is served", name, path)
            continue
        queries[name] = entry
    return queries


_served: set[int] = set()
_warned: set[str] = set()
_canned_cache: dict[str, tuple[dict, dict]] = {}


def _canned(path: Path) -> dict[str, dict]:
    """The same dict objects for as long as the file is unchanged (see `_served`)."""
    parsed = load_cookbook(path)
    cached = _canned_cache.get(str(path))
    if cached is None or cached[0] is not parsed:
        cached = (parsed, {name: canned(query) for name, query in parsed.items()})
        _canned_cache[str(path)] = cached
        _served.update(id(entry) for entry in cached[1].values())
    return cached[1]
