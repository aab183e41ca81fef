"""`python -m harvest ...`: a thin click CLI over the pipeline's plain functions.

Owns argument handling, logging set-up, the progress display and exit codes:
0 when the command did all it was asked, 1 when a run failed (one-line reason
on stderr), 2 for bad usage, 3 when another harvest holds the lock, 4 when
`status --max-age` finds the catalog stale.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from . import __version__, clock, store
from .config import CtgovSettings, EuropepmcSettings, OpenalexSettings, Settings, default_db_path
from .eutils import EutilsError
from .http import HttpError, printable
from .pubmed_xml import PubmedXMLError
from .query import QUERY_VERSION, TOPIC_QUERY
from .runner import DEFAULT_BATCH, DEFAULT_OVERLAP_DAYS, HarvestFailed, choose_mode, run_harvest
from .summaries import OUTSIDE_TOPIC_SQL

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar  # what click.progressbar returns

log = logging.getLogger("harvest")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_STALE = 4


class _PrintableFormatter(logging.Formatter):
    """Log lines on one printable line each: a server's words quoted in a warning cannot drive the
    terminal (a traceback, appended after the message, keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger("harvest")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def _error(message: str) -> None:
    """One line on stderr; a file's name or a server's words in it cannot drive the terminal."""
    click.echo(f"harvest: error: {printable(message)}", err=True)


def _fail(message: str, code: int = EXIT_FAILED) -> None:
    _error(message)
    sys.exit(code)


class TerminalProgress:
    """A progress bar on a terminal; one log line per ~10% elsewhere (cron, CI)."""

    def __init__(self, label: str = "records fetched", unit: str = "records"):
        self.label = label
        self.unit = unit
        self.tty = sys.stderr.isatty()
        self.bar: ProgressBar[int] | None = None
        self.total = 0
        self.done = 0
        self._next_log = 0

    def start(self, total: int) -> None:
        self.total = total
        self.done = 0
        if self.tty and total:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr, show_pos=True, show_eta=True)
            self.bar.__enter__()
        self._next_log = max(1, total // 10)

    def advance(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.total and self.done >= self._next_log:
            log.info("%s: %d/%d %s", self.label, self.done, self.total, self.unit)
            while self._next_log <= self.done:
                self._next_log += max(1, self.total // 10)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Catalog database (default: $CATALOG_DB, else db/catalog.db).",
)


def _existing_catalog(db_path, missing_code: int = EXIT_FAILED) -> Path:
    """The catalog a command that reads one works on: it must exist and be a catalog."""
    path = Path(db_path or default_db_path())
    if not path.exists():
        _fail(f"no catalog at {path}: run `python -m harvest run` first", missing_code)
    store.check_catalog(path)
    return path


class _CatalogGroup(click.Group):
    """A `--db` that names something other than a catalog fails every command the same way:
    one line naming the file and what it is, exit 1, the file untouched."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except store.NotACatalog as exc:
            _fail(str(exc))
        except PubmedXMLError as exc:
            # A file given as PubMed XML that is not (evaluate, train-tagger): one line naming it.
            _fail(str(exc))
        except store.HarvestLocked as exc:  # every command that writes: another harvest holds it
            _fail(str(exc), EXIT_LOCKED)
        except sqlite3.DatabaseError as exc:  # read-only, a directory's path, a disk error
            _fail(f"the catalog cannot be read or written: {exc}")
        except OSError as exc:  # an export to a full disk
            if isinstance(exc, BrokenPipeError):
                raise  # the reader of stdout left (`export | head`): click's main quiets it
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc}")


@click.group(cls=_CatalogGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
@click.version_option(version=__version__, prog_name="ketamine-catalog")
def cli(verbose: bool) -> None:
    """Harvest the PubMed literature on ketamine for depression into a SQLite catalog."""
    _setup_logging(verbose)


def _parse_date(ctx, param, value):
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from None


T = TypeVar("T")

SOURCES = ("pubmed", "trials", "preprints", "citations")


def _parse_sources(ctx, param, value):
    if value is None:
        return None
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in SOURCES]
    if unknown or not names:
        raise click.BadParameter(
            f"expected a comma-separated list of {', '.join(SOURCES)}, got {value!r}",
            param_hint="--sources (or HARVEST_SOURCES)",
        )
    return [s for s in SOURCES if s in names]


@cli.command()
@db_option
@click.option("--full", is_flag=True, help="Re-sweep everything the query matches.")
@click.option(
    "--since", callback=_parse_date, metavar="YYYY-MM-DD", help="Fetch records created or revised since this date."
)
@click.option(
    "--overlap-days",
    type=click.IntRange(0, 365),
    default=DEFAULT_OVERLAP_DAYS,
    show_default=True,
    help="An incremental run starts this many days before the last run, since PubMed's dates lag.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10000),
    default=DEFAULT_BATCH,
    show_default=True,
    help="Records per efetch request.",
)
@click.option(
    "--sources",
    callback=_parse_sources,
    default=None,
    metavar="pubmed,trials,preprints,citations",
    help="Which sources to harvest, in this order (default: $HARVEST_SOURCES, else all four).",
)
def run(db_path, full, since, overlap_days, batch_size, sources):
    """Harvest PubMed, then ClinicalTrials.gov, then Europe PMC's preprints, then OpenAlex's citation
    counts, into the catalog (incremental unless new or --full)."""
    sources = sources or _parse_sources(None, None, os.environ.get("HARVEST_SOURCES") or ",".join(SOURCES))
    if full and since:
        raise click.UsageError("--full and --since exclude each other")
    if since and since > clock.today():
        # A window that starts tomorrow is empty: it would "succeed" having searched nothing.
        raise click.BadParameter(
            f"{since} is after today ({clock.today()}): records cannot be created or revised in the future",
            param_hint="--since",
        )
    db_path = db_path or default_db_path()
    # Every source's settings are read before the first source runs: a bad CTGOV_PAGE_SIZE must
    # not end the run after PubMed's, hiding its outcome and skipping the sources after it.
    for source, settings in (
        ("pubmed", Settings),
        ("trials", CtgovSettings),
        ("preprints", EuropepmcSettings),
        ("citations", OpenalexSettings),
    ):
        if source in sources:
            settings.from_env()
    failures = []
    if "pubmed" in sources:
        failures += _run_pubmed(db_path, full, since, overlap_days, batch_size)
    if "trials" in sources:
        failures += _run_trials(db_path, full, overlap_days)
    if "preprints" in sources:
        failures += _run_preprints(db_path, full, overlap_days)
    if "citations" in sources:
        failures += _run_citations(db_path, full)
    if failures:
        for message in failures[:-1]:
            _error(message)
        _fail(failures[-1])


def _run_source(
    label: str,
    run: Callable[[], T],
    report: Callable[[T], str],
    errors: tuple[type[Exception], ...] = (HarvestFailed, HttpError),
) -> list[str]:
    """One source's run: echoes its summary line and returns nothing, or returns its failure as
    a one-line message (`LABEL run N failed: ...`). A run another process holds exits at once."""
    try:
        outcome = run()
    except errors as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        run_id = getattr(exc, "run_id", None)
        runs = f"{label} run" if label else "run"
        return [f"{f'{runs} {run_id} failed: ' if run_id else (f'{label}: ' if label else '')}{first_line}"]
    click.echo(report(outcome))
    return []


def _run_trials(db_path, full, overlap_days) -> list[str]:
    """The ClinicalTrials.gov run; returns its failure as a one-line message (or nothing)."""
    from .ctgov import CtgovClient
    from .runner import run_trials_harvest

    return _run_source(
        "trials",
        lambda: run_trials_harvest(db_path, full=full, overlap_days=overlap_days, client=CtgovClient()),
        lambda outcome: (
            f"trials run {outcome.run_id} ({outcome.mode}): {outcome.listed} studies listed by the topic search, "
            f"{outcome.cited} cited ids asked for: {outcome.new} new, {outcome.updated} updated, "
            f"{outcome.unchanged} unchanged, {outcome.not_in_registry} not in the registry; "
            f"{outcome.requests} requests to ClinicalTrials.gov"
        ),
    )


def _run_preprints(db_path, full, overlap_days) -> list[str]:
    """The Europe PMC preprints run; returns its failure as a one-line message (or nothing)."""
    from .europepmc import EuropepmcClient
    from .runner import PreprintsOutcome, run_preprints_harvest

    def report(outcome: PreprintsOutcome) -> str:
        linked = ", ".join(f"{n} by {m}" for m, n in sorted(outcome.linked.items())) or "none"
        return (
            f"preprints run {outcome.run_id} ({outcome.mode}): {outcome.listed} preprints listed by the topic "
            f"search: {outcome.new} new, {outcome.updated} updated, {outcome.unchanged} unchanged; "
            f"{outcome.pmids_asked} catalog records asked for their preprint links; "
            f"linked to their published record: {linked}; {outcome.requests} requests to Europe PMC"
        )

    return _run_source(
        "preprints",
        lambda: run_preprints_harvest(db_path, full=full, overlap_days=overlap_days, client=EuropepmcClient()),
        report,
    )


def _run_citations(db_path, full) -> list[str]:
    """The OpenAlex run; returns its failure as a one-line message (or nothing)."""
    from .openalex import OpenalexClient
    from .runner import run_citations_harvest

    return _run_source(
        "citations",
        lambda: run_citations_harvest(db_path, full=full, client=OpenalexClient()),
        lambda outcome: (
            f"citations run {outcome.run_id} ({outcome.mode}): {outcome.due} records due ({outcome.never_read} "
            f"never read, {outcome.stale} read a week ago or more, {outcome.newest} newest): {outcome.new} new, "
            f"{outcome.updated} updated, {outcome.unchanged} unchanged, {outcome.not_found} unknown to OpenAlex; "
            f"{outcome.requests} requests to OpenAlex"
        ),
    )


def _run_pubmed(db_path, full, since, overlap_days, batch_size) -> list[str]:
    """The PubMed run; returns its failure as a one-line message (or nothing)."""
    settings = Settings.from_env()
    return _run_source(
        "",
        lambda: run_harvest(
            db_path,
            settings=settings,
            full=full,
            since=since,
            overlap_days=overlap_days,
            batch_size=batch_size,
            progress=TerminalProgress(),
        ),
        lambda outcome: (
            f"run {outcome.run_id} ({outcome.mode}): {outcome.promised} records promised, "
            f"{outcome.stored} stored: {outcome.new} new, {outcome.updated} updated, "
            f"{outcome.unchanged} unchanged, {outcome.unmatched} no longer matching; "
            f"{outcome.requests} requests to E-utilities"
        ),
        errors=(HarvestFailed, EutilsError),
    )


@cli.command(name="import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@db_option
@click.option(
    "--match-topic",
    is_flag=True,
    help="Keep only records the topic query matches (evaluated locally over title, abstract, keywords, MeSH).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes that parse and tag files while one writer stores them (for many large files) "
    "[default: 1; with --engine dask, one per core].",
)
@click.option(
    "--engine",
    type=click.Choice(["processes", "dask"]),
    default="processes",
    show_default=True,
    help="processes: this process, or --workers processes beside it; dask: a Dask cluster "
    "(a local one of --workers processes, or --scheduler's) reads, parses and tags the files.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    default=None,
    help="With --engine dask: a running Dask scheduler (tcp://host:8786) whose workers see the files "
    "at the same paths, instead of a local cluster.",
)
def import_(files, db_path, match_topic, workers, engine, scheduler):
    """Load PubMed XML files (.xml or .xml.gz: efetch output, NLM baseline/update files)."""
    from .importer import ImportFailed, import_files

    if scheduler is not None and engine != "dask":
        raise click.UsageError("--scheduler needs --engine dask")
    if scheduler is not None and workers is not None:
        raise click.UsageError("--workers sizes a local cluster; with --scheduler the cluster's own workers run")
    db_path = db_path or default_db_path()
    progress = TerminalProgress("reading files", "bytes")
    try:
        if engine == "dask":
            from .cluster import DaskMissing, import_files_dask

            try:
                outcome = import_files_dask(
                    db_path,
                    list(files),
                    scheduler=scheduler,
                    workers=workers,
                    match_topic=match_topic,
                    progress=progress,
                )
            except DaskMissing as exc:
                _fail(str(exc))
        else:
            outcome = import_files(
                db_path, list(files), match_topic=match_topic, workers=workers or 1, progress=progress
            )
    except ImportFailed as exc:
        prefix = f"import run {exc.run_id} failed: " if exc.run_id else ""
        _fail(prefix + str(exc).splitlines()[0])
    click.echo(
        f"import run {outcome.run_id}: {outcome.files} files, {outcome.records} records read"
        + (f", {outcome.skipped_off_topic} off topic skipped" if match_topic else "")
        + f"; {outcome.new} new, {outcome.updated} updated, {outcome.unchanged} unchanged, "
        f"{outcome.deleted} marked deleted"
    )


@cli.command()
@db_option
def retag(db_path):
    """Re-tag every stored record with the current rules (after a rule change)."""
    from . import rebuild
    from .tags import RULES_VERSION

    db_path = _existing_catalog(db_path)
    with store.harvest_lock(db_path):
        db = rebuild.open_for_writing(db_path)
        count = rebuild.retag(db)  # stored XML -> parse -> tag -> rows -> save -> summarise
    click.echo(f"re-tagged {count} records with {RULES_VERSION}")


@cli.command()
@db_option
def rebuild(db_path):
    """Rebuild every derived row (columns, authors, MeSH, tags, counts) from the stored XML."""
    from . import rebuild as rebuilding

    db_path = _existing_catalog(db_path)
    with store.harvest_lock(db_path):
        db = store.open_db(db_path)
        outcome = rebuilding.rebuild(db)  # stored XML -> parse -> tag -> rows -> save -> summarise
    versions = rebuilding.current_versions()
    click.echo(f"rebuilt {outcome.rebuilt} records with {versions['rows']} and {versions['rules']}")


@cli.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@db_option
@click.option("--no-baseline", is_flag=True, help="Skip the TF-IDF + logistic-regression baseline.")
@click.option(
    "--check",
    is_flag=True,
    help="Exit 1 when a target of the evaluation is not met (or cannot be judged: no positives).",
)
def evaluate(files, db_path, no_baseline, check):
    """Score the text-only tagger against PubMed's own indexing (MEDLINE records, report split).

    Reads the catalog's stored records, or the PubMed XML FILES given.
    """
    from .evaluate import format_report, run_evaluation

    if files:
        report = run_evaluation(paths=list(files), baseline=not no_baseline)
    else:
        db_path = _existing_catalog(db_path)
        report = run_evaluation(db=db_path, baseline=not no_baseline)
    click.echo(format_report(report))
    if check and not report.targets_met:
        sys.exit(EXIT_FAILED)


@cli.command(name="train-tagger")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the model (default: the package's harvest/design_model.json).",
)
def train_tagger(files, output):
    """Retrain the design model from PubMed XML FILES (default: the shared files the committed
    model was trained on, so that it comes out unchanged), deterministically."""
    from . import design_model
    from .evaluate import MISSING_SKLEARN, iter_records_from_files
    from .train_tagger import train, training_corpus_paths, write_model

    try:
        import sklearn  # noqa: F401  # before hours of reading, not after
    except ImportError:
        _fail(f"train-tagger: {MISSING_SKLEARN}")
    paths = list(files) or training_corpus_paths()
    if not paths:
        _fail("no PubMed files given and none found in ../shared/data/pubmed", EXIT_USAGE)
    output = output or design_model.MODEL_PATH
    records = ({k: v for k, v in r.items() if k != "xml"} for r in iter_records_from_files(paths))
    try:
        model = train(records, log=lambda m: click.echo(m, err=True))
    except ValueError as exc:  # files without a label's positives: nothing to learn it from
        _fail(str(exc))
    write_model(model, output)
    click.echo(f"wrote {output} ({Path(output).stat().st_size // 1024} KB)")


@cli.command(name="export")
@db_option
@click.option("--format", "fmt", type=click.Choice(["ris", "bibtex", "csl-json"]), required=True)
@click.option("--search", metavar="TEXT", help="Only records this full-text search matches (FTS5 syntax).")
@click.option(
    "--since", metavar="YYYY-MM-DD", callback=_parse_date, help="Only records first stored on or after this date."
)
@click.option(
    "--pmid", "pmids", type=click.IntRange(1, 2**63 - 1), multiple=True, help="Exactly these PMIDs (repeatable)."
)
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-")
def export_(db_path, fmt, search, since, pmids, output):
    """Export records as RIS, BibTeX or CSL-JSON for reference managers."""
    import sqlite3

    from .export import load_records, render, select_pmids

    db_path = _existing_catalog(db_path)
    target = getattr(output, "name", "-")
    if target not in ("-", "<stdout>"):  # -o is opened lazily: nothing is written before this check
        catalog_files = {Path(f"{db_path}{suffix}").resolve() for suffix in ("", "-wal", "-shm", "-journal", ".lock")}
        if Path(target).resolve() in catalog_files:
            _fail(f"-o {target} is the catalog itself (or one of its files): give the export another path", EXIT_USAGE)
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        chosen = list(pmids) or select_pmids(conn, search=search, since=since.isoformat() if since else None)
        records = load_records(conn, chosen)
    except sqlite3.OperationalError as exc:  # malformed FTS5 syntax in --search
        raise click.BadParameter(str(exc), param_hint="--search") from None
    finally:
        conn.close()
    output.write(render(records, fmt))
    if not records:
        # An empty file and exit 0 look like success: say that nothing matched, and what was asked.
        options = [
            f"--pmid {', '.join(map(str, pmids))}" if pmids else None,
            f"--search {search!r}" if search and not pmids else None,
            f"--since {since}" if since and not pmids else None,
        ]
        asked = "; ".join(a for a in options if a) or "every record matching the query"
        click.echo(f"harvest: 0 records to export ({asked}) in {db_path}", err=True)


def parse_age(text: str) -> dt.timedelta:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhm])\s*", text or "")
    if not match:
        raise click.BadParameter(f"expected an age like 2d, 36h or 90m, got {text!r}")
    number, unit = float(match.group(1)), match.group(2)
    try:
        return {"d": dt.timedelta(days=number), "h": dt.timedelta(hours=number), "m": dt.timedelta(minutes=number)}[
            unit
        ]
    except OverflowError:
        raise click.BadParameter(f"{text!r} is longer than any calendar holds") from None


@cli.command()
@db_option
@click.option(
    "--max-age",
    "max_ages",
    metavar="[SOURCE=]AGE",
    multiple=True,
    help="Exit non-zero (4) when a source's last successful run is older, e.g. 2d (every source "
    "in $HARVEST_SOURCES) or trials=8d (that source); repeatable.",
)
@click.option(
    "--runs",
    "show_runs",
    type=click.IntRange(1, 100_000),
    default=10,
    show_default=True,
    help="How many recent runs to list.",
)
def status(db_path, max_ages, show_runs):
    """Recent runs, catalog counts, each source's last success, and what the next run will ask for."""
    limits = _parse_max_ages(max_ages)
    db_path = _existing_catalog(db_path, EXIT_STALE if limits else EXIT_FAILED)
    try:
        _print_status(db_path, limits, show_runs)
    except sqlite3.Error as exc:
        _fail(f"cannot read the catalog {db_path}: {exc}")


def _parse_max_ages(values) -> dict[str, tuple[str, dt.timedelta]]:
    """{source: (as written, age)} from `--max-age` values."""
    default_sources = _parse_sources(None, None, os.environ.get("HARVEST_SOURCES") or ",".join(SOURCES))
    limits: dict[str, tuple[str, dt.timedelta]] = {}
    for value in values:
        source, _, age = value.rpartition("=")
        if source:
            if source.strip().lower() not in SOURCES:
                raise click.BadParameter(
                    f"unknown source {source!r} (expected one of {', '.join(SOURCES)})", param_hint="--max-age"
                )
            limits[source.strip().lower()] = (age, parse_age(age))
        else:
            for name in default_sources:
                limits.setdefault(name, (age, parse_age(age)))
    return limits


def _print_status(db_path: Path, limits: dict[str, tuple[str, dt.timedelta]], show_runs: int) -> None:
    db = store.open_db(db_path)
    holder = store.lock_holder(db_path)
    # A full sweep that no longer finds a record notes its run (unmatched_run); a record an
    # import stored although the topic does not match it (no --match-topic) never matched.
    counts = next(
        db.query(
            "select count(*) as articles, coalesce(sum(matches_query = 1 and is_deleted = 0), 0) as matching, "
            "coalesce(sum(matches_query = 0 and unmatched_run is not null), 0) as unmatched, "
            f"coalesce(sum({OUTSIDE_TOPIC_SQL}), 0) as outside, "
            "coalesce(sum(is_deleted = 1), 0) as deleted from articles"
        )
    )
    outside = f", {counts['outside']} outside the topic, stored by an import" if counts["outside"] else ""
    click.echo(
        f"catalog {db_path}: {counts['articles']} articles ({counts['matching']} matching the query, "
        f"{counts['unmatched']} no longer matching{outside}, {counts['deleted']} deleted by NLM)"
    )
    trials = next(
        db.query(
            "select count(*) as trials, coalesce(sum(in_topic), 0) as in_topic, "
            "(select count(*) from trials_not_in_registry) as unknown from trials"
        )
    )
    click.echo(
        f"trials: {trials['trials']} studies from ClinicalTrials.gov ({trials['in_topic']} found by the "
        f"topic query, the rest cited by catalog records); {trials['unknown']} cited ids not in the registry"
    )
    if db.table("preprints").exists():
        pre = next(
            db.query(
                "select count(*) as preprints, coalesce(sum(in_topic), 0) as in_topic, "
                "coalesce(sum(has_published_version), 0) as published from preprints"
            )
        )
        click.echo(
            f"preprints: {pre['preprints']} from Europe PMC ({pre['in_topic']} found by the topic query), "
            f"{pre['published']} linked to their published record in the catalog"
        )
    runs = list(db.query("select * from harvest_runs order by id desc limit ?", [show_runs]))
    if runs:
        click.echo("recent runs:")
        for r in runs:
            line = (
                f"  #{r['id']} {r['started_at']} {r['status']:<8} {r['mode']} ({r['source']}): "
                f"promised {r['records_promised'] or 0}, new {r['new'] or 0}, updated {r['updated'] or 0}, "
                f"unchanged {r['unchanged'] or 0}, unmatched {r['unmatched'] or 0}, requests {r['requests'] or 0}"
            )
            click.echo(line)
            if r["status"] == "running":
                click.echo(
                    f"      in progress: {holder}"
                    if holder
                    else "      no process holds the lock: it died, and the next run marks it aborted"
                )
            if r["error"]:  # a catalog handed over may hold anything: one printable line each
                click.echo(f"      error: {printable(r['error'])}")
            if r["count_discrepancy"]:
                click.echo(f"      counts: {printable(r['count_discrepancy'])}")
    else:
        click.echo("no runs yet")
    last = store.last_successful_run(db)
    last_trials = store.last_successful_source_run(db, "trials")
    last_preprints = store.last_successful_source_run(db, "preprints")
    last_citations = store.last_successful_source_run(db, "citations")
    last_of = {"pubmed": last, "trials": last_trials, "preprints": last_preprints, "citations": last_citations}
    if db["citations"].exists():
        read = next(
            db.query("select count(*) as n, coalesce(sum(found), 0) as found, max(read_at) as latest from citations")
        )
        click.echo(
            f"citations: {read['n']} records read from OpenAlex ({read['found']} known to it), latest read "
            f"{read['latest'] or 'never'}; {len(store.citations_due(db, clock.today()).pmids)} due now"
        )
    for name, run in last_of.items():
        click.echo(
            f"last success, {name}: " + (f"run #{run['id']} finished {run['finished_at']}" if run else "none yet")
        )
    # The trials line first: PubMed's `next run:` stays the last section readers split on.
    from .query import TRIALS_QUERY_VERSION
    from .runner import choose_trials_mode

    try:
        mode, since = choose_trials_mode(last_trials, full=False, overlap_days=DEFAULT_OVERLAP_DAYS)
    except (TypeError, ValueError):
        mode, since = "full", None
    click.echo(
        f"next trials run: {mode}"
        + (f": studies updated since {since}" if since else ": every study the query lists")
        + f" (trials query version {TRIALS_QUERY_VERSION})"
    )
    from .query import PREPRINTS_QUERY_VERSION
    from .runner import choose_preprints_mode

    try:
        mode, since = choose_preprints_mode(last_preprints, full=False, overlap_days=DEFAULT_OVERLAP_DAYS)
    except (TypeError, ValueError):
        mode, since = "full", None
    click.echo(
        f"next preprints run: {mode}"
        + (f": preprints first indexed since {since}" if since else ": every preprint the query lists")
        + f" (preprints query version {PREPRINTS_QUERY_VERSION})"
    )
    try:
        mode, since = choose_mode(
            last, full=False, since=None, overlap_days=DEFAULT_OVERLAP_DAYS, partial=store.has_partial_runs(db)
        )
    except (TypeError, ValueError):
        mode, since = "full", None
    next_run = f"{mode}" + (
        f": records created or revised since {since}" if since else ": every record the query matches"
    )
    click.echo(f"next run: {next_run} (query version {QUERY_VERSION})")
    stale = []
    for name, (written, max_delta) in limits.items():
        # Current means the full-sweep chain is: a `--since` run or an import alone leaves
        # the catalog incomplete however recent it is.
        run = last_of[name]
        last_any = run["finished_at"] if run else None
        what = "harvest" if name == "pubmed" else f"{name} harvest"
        if not last_any:
            stale.append(
                f"no successful {what} yet"
                + (
                    " (only --since runs or imports: the next plain run is a full sweep)"
                    if name == "pubmed" and store.has_partial_runs(db)
                    else ""
                )
            )
            continue
        age = clock.now() - dt.datetime.fromisoformat(last_any)
        if age > max_delta:
            stale.append(f"the last successful {what} finished {last_any}, {_human(age)} ago (limit {written})")
    if stale:
        for message in stale[:-1]:
            _error(message)
        _fail(stale[-1], EXIT_STALE)


def _human(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


@cli.command()
def query():
    """Print the topic query and its version, for PubMed, ClinicalTrials.gov and Europe PMC."""
    from .query import PREPRINTS_QUERY_VERSION, TRIALS_QUERY_VERSION, preprints_query, trials_query_text

    click.echo(f"# query version {QUERY_VERSION}")
    click.echo(TOPIC_QUERY)
    click.echo(f"# ClinicalTrials.gov, trials query version {TRIALS_QUERY_VERSION}")
    click.echo(trials_query_text())
    click.echo(f"# Europe PMC preprints, preprints query version {PREPRINTS_QUERY_VERSION}")
    click.echo(preprints_query())
