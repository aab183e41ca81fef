"""Build the published, immutable copy of the catalog: `make publish-build`.

    python db/publish.py [SOURCE_DB] [TARGET_DIR]     (defaults: db/catalog.db build/publish)

TARGET_DIR becomes a Datasette configuration directory that `datasette TARGET_DIR` serves
immutably: the catalog's metadata, settings, templates, plugins and static files, a consistent
snapshot of the database as `catalog.db`, and `inspect-data.json` (its hash and table counts).

Owns the publish step only. The snapshot is taken with SQLite's backup API, so a harvest may keep
writing to SOURCE_DB meanwhile; it is built beside the published file and then renamed over it
(`os.replace`, atomic on one filesystem), never written in place: a server still reading the
old file keeps its open inode, and the next start sees the new one whole.
Must never: modify SOURCE_DB, or leave a half-written catalog.db in TARGET_DIR.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
NAME = "catalog"
# Everything in db/ is configuration except the live database and what goes with it.
NOT_CONFIG = (
    "*.db",
    "*.db-*",
    "*.sqlite",
    "*.sqlite3",
    "*.lock",
    "inspect-data.json",
    "publish.py",
    ".*",
    "__pycache__",
    "*.pyc",
)


def config_entries(config_dir: Path = CONFIG_DIR) -> list[Path]:
    return sorted(p for p in config_dir.iterdir() if not any(p.match(pattern) for pattern in NOT_CONFIG))


def snapshot(source: Path, target: Path) -> None:
    """A consistent copy of `source` at `target`, as one self-contained file (no WAL)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("pragma journal_mode = delete")
        dst.execute("analyze")
        dst.commit()
        if dst.execute("pragma integrity_check").fetchone()[0] != "ok":
            raise RuntimeError(f"the snapshot of {source} failed its integrity check")
    finally:
        src.close()
        dst.close()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        for block in iter(lambda: fp.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inspect_data(db_file: Path, published_name: str) -> dict:
    """What `datasette inspect` writes, for `db_file` as it will be named when published."""
    conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")]
        counts = {}
        for table in tables:
            try:
                counts[table] = {"count": conn.execute(f'select count(*) from "{table}"').fetchone()[0]}
            except sqlite3.Error:
                counts[table] = {"count": 0}
    finally:
        conn.close()
    return {
        Path(published_name).stem: {
            "hash": file_sha256(db_file),
            "size": db_file.stat().st_size,
            "file": published_name,
            "tables": counts,
        }
    }


def _replace_dir(source: Path, target: Path) -> None:
    staged = target.with_name(f".{target.name}.new")
    old = target.with_name(f".{target.name}.old")
    for leftover in (staged, old):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(source, staged, ignore=shutil.ignore_patterns(*NOT_CONFIG))
    if target.exists():
        target.rename(old)
    staged.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def copy_config(target_dir: Path, config_dir: Path = CONFIG_DIR) -> None:
    """metadata.yml, settings.json, templates/, plugins/, static/ and whatever else db/ holds
    for them (e.g. the queries a plugin reads), each replaced whole."""
    for entry in config_entries(config_dir):
        if entry.is_dir():
            _replace_dir(entry, target_dir / entry.name)
        else:
            staged = target_dir / f".{entry.name}.new"
            shutil.copyfile(entry, staged)
            os.replace(staged, target_dir / entry.name)


# The pure module the catalog's plugin renders RIS/BibTeX/CSL-JSON with, copied beside the
# published plugin (db/plugins/catalog.py loads it from there by path; Datasette also loads it
# as a plugin module, which has no hooks and does nothing).
EXPORT_MODULE = CONFIG_DIR.parent / "harvest" / "export.py"
EXPORT_COPY = Path("plugins") / "harvest_export.py"


def copy_export_module(target_dir: Path) -> None:
    (target_dir / EXPORT_COPY).parent.mkdir(parents=True, exist_ok=True)
    staged = target_dir / EXPORT_COPY.with_name(f".{EXPORT_COPY.name}.new")
    shutil.copyfile(EXPORT_MODULE, staged)
    os.replace(staged, target_dir / EXPORT_COPY)


def build(source: Path, target_dir: Path, config_dir: Path = CONFIG_DIR) -> Path:
    """Publish `source` into `target_dir`; returns the published database's path."""
    source, target_dir = Path(source), Path(target_dir)
    if not source.is_file():
        raise FileNotFoundError(f"no catalog at {source}: run `python -m harvest run` first")
    target_dir.mkdir(parents=True, exist_ok=True)
    published = target_dir / f"{NAME}.db"
    # Beside the published file (same filesystem, so the rename is atomic), under a name
    # Datasette's configuration-directory mode does not pick up (*.db, *.sqlite, *.sqlite3).
    building = target_dir / f".{NAME}.db.building-{os.getpid()}"
    building_json = target_dir / f".inspect-data.json.building-{os.getpid()}"
    try:
        snapshot(source, building)
        building_json.write_text(json.dumps(inspect_data(building, published.name), indent=2))
        copy_config(target_dir, config_dir)
        copy_export_module(target_dir)
        os.replace(building, published)
        os.replace(building_json, target_dir / "inspect-data.json")
    finally:
        for leftover in (building, building_json):
            leftover.unlink(missing_ok=True)
    return published


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else Path("db/catalog.db")
    target = Path(argv[2]) if len(argv) > 2 else Path("build/publish")
    try:
        published = build(source, target)
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        print(f"publish-build: error: {exc}", file=sys.stderr)
        return 1
    counts = json.loads((target / "inspect-data.json").read_text())[NAME]["tables"]
    print(
        f"published {published} ({counts.get('articles', {}).get('count', 0)} articles); "
        f"serve it with: datasette {target}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
