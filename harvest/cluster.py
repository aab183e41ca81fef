"""`harvest import --engine dask`: the per-file work of an import on a Dask cluster, one writer here.

Owns handing files to Dask workers and taking their prepared batches back. A worker runs
`importer.read_prepared_batches` on one file (read, prefilter with --match-topic, parse, tag,
rows: no database) and returns the file's batches; this process is the one writer, storing
them through the importer's own path, file after file in the order given, so a later update
file wins over an earlier one and each file's deletions are applied after its records, as in
a sequential import. Must never: import dask unless the engine is used (the harvester runs
without it), gather every file's result at once (at most `ahead` files are in flight: the
workers keep finished ones until the writer takes them, one at a time), or store a batch a
worker prepared with other rules or another row model than this process's.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections import deque
from contextlib import contextmanager
from pathlib import Path

from . import __version__, importer
from .importer import ImportFailed, ImportOutcome
from .runner import Progress

log = logging.getLogger("harvest.import")

MISSING_DASK = "--engine dask needs dask[distributed]: pip install 'ketamine-catalog[cluster]'"
# How long an import waits for a first worker to join a scheduler that has none.
WAIT_FOR_WORKERS_S = 60


class DaskMissing(Exception):
    """--engine dask without dask[distributed] installed."""


def require_dask() -> None:
    """Raise DaskMissing (one line, what to install) unless dask.distributed can be imported."""
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        raise DaskMissing(MISSING_DASK) from None


def import_files_dask(
    db_path: Path | str,
    paths: list[Path],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    match_topic: bool = False,
    progress: Progress | None = None,
) -> ImportOutcome:
    """`importer.import_files` with each file read, parsed and tagged on a Dask worker.

    `scheduler` is the address of a running cluster (`tcp://host:8786`), whose workers must see
    the files at the same paths and run the same ketamine-catalog; without it a local cluster
    of `workers` processes (default: one per core) is started for this import and closed after.
    """
    require_dask()
    with _client(scheduler, workers) as client:
        _check_versions(client, scheduler or "a local cluster")
        threads = sum(client.nthreads().values())
        # Every worker thread busy and two finished files waiting: the writer never idles on a
        # fast cluster, and no more than this many files' batches exist at once.
        ahead = threads + 2
        log.info("Dask cluster %s: %d worker threads, %d files in flight", client.scheduler.address, threads, ahead)
        reading = None

        def read(paths, match_topic, progress):
            nonlocal reading
            reading = _read_on_cluster(client, paths, match_topic, ahead)
            return reading

        try:
            return importer._import(db_path, paths, match_topic, progress, read)
        finally:
            if reading is not None:
                reading.close()  # a failed import cancels the files still in flight while the client is open


@contextmanager
def _client(scheduler: str | None, workers: int | None):
    from dask.distributed import Client, LocalCluster

    if scheduler is None:
        n = workers or os.cpu_count() or 1
        # One thread per worker process: parsing and tagging hold the GIL. Dask's own logs are
        # silenced: a worker's failure reaches the writer through its file's future (and a dead
        # worker as KilledWorker), while closing the cluster can log a heartbeat race as an error.
        with (
            LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.CRITICAL,
            ) as local,
            Client(local) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler, timeout="30s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ImportFailed(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
        except TimeoutError:
            raise ImportFailed(
                f"the Dask scheduler at {scheduler} has no worker (none joined in {WAIT_FOR_WORKERS_S} s)"
            ) from None
        yield client


def _versions() -> tuple[str, str, str]:
    """What decides the rows a worker makes: the code's version, the tagging rules, the row model."""
    from .rows import ROW_MODEL_VERSION
    from .tags import RULES_VERSION

    return __version__, RULES_VERSION, ROW_MODEL_VERSION


def _check_versions(client, where: str) -> None:
    """Refuse a cluster whose scheduler or workers run other code than this writer: the scheduler
    unpickles the tasks (`prepared_file`), the workers make the rows."""
    ours = _versions()
    try:
        found = {"scheduler": client.run_on_scheduler(_versions)}
        found.update((f"worker {address}", v) for address, v in client.run(_versions).items())
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ImportFailed(
            f"the Dask cluster at {where} cannot run the harvester ({type(exc).__name__}: {first}): "
            "install the same ketamine-catalog[cluster] on the scheduler and every worker"
        ) from None
    for who, theirs in found.items():
        if tuple(theirs) != ours:
            raise ImportFailed(
                f"Dask {who} runs ketamine-catalog {' '.join(theirs)}, this writer {' '.join(ours)}: "
                "install the same version on the scheduler and every worker"
            )


def prepared_file(path: str, match_topic: bool) -> dict:
    """On a worker: one file's items from `read_prepared_batches`, each pickled as it is made
    (a 30,000-record file's rows are ~160 MB pickled against ~1 GB as Python objects, and the
    writer unpickles one batch at a time), and the fault that stopped the file, if one did."""
    items: list[bytes] = []
    fault = None
    if not os.path.isfile(path):
        fault = "not found on the Dask worker (every worker must see the files at the same path)"
    else:
        try:
            for item in importer.read_prepared_batches(Path(path), match_topic):
                items.append(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
        except importer.FileFault as exc:
            fault = str(exc)  # what came before it is stored, as in the other engines
    return {"versions": _versions(), "items": items, "fault": fault}


def _read_on_cluster(client, paths: list[Path], match_topic: bool, ahead: int):
    """(path, items) per file in the order given, as `importer._import` consumes them; a file
    is submitted when one `ahead` of it is taken, and released once stored."""
    in_flight: deque = deque()
    pending = iter(enumerate(paths))

    def submit_next() -> None:
        for i, path in pending:
            future = client.submit(
                prepared_file,
                str(path.resolve()),
                match_topic,
                pure=False,  # a file may change between imports: never reuse a result
                priority=-i,  # earlier files first, whatever the scheduler's own order
            )
            in_flight.append((path, future))
            return

    for _ in range(ahead):
        submit_next()
    try:
        while in_flight:
            path, future = in_flight.popleft()
            submit_next()
            yield path, _items_of(path, future)
            future.release()
    finally:
        client.cancel([future for _, future in in_flight])


def _items_of(path: Path, future):
    try:
        result = future.result()
    except Exception as exc:  # the worker's error, or the cluster losing it (KilledWorker)
        first = (str(exc).strip().splitlines() or [""])[0]
        raise RuntimeError(f"{path}: on a Dask worker: {type(exc).__name__}: {first}") from exc
    # A worker that joined after the check above: its rows must be made as this writer's are.
    theirs, ours = tuple(result["versions"]), _versions()
    if theirs != ours:
        raise RuntimeError(
            f"{path}: the Dask worker runs ketamine-catalog {' '.join(theirs)}, this writer {' '.join(ours)}: "
            "install the same version on every worker"
        )
    items, fault = result["items"], result["fault"]
    del result
    while items:
        yield pickle.loads(items.pop(0))  # each batch's bytes are freed once it is stored
    if fault is not None:
        raise importer.FileFault(fault)
    yield ("bytes", path.stat().st_size, 0, 0)  # progress: the file is done
