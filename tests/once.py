"""Build a catalog once per test session, whichever pytest-xdist worker asks first.

`make test` runs test files on every core, each worker a process of its own, so a catalog
cached in a module global is built again by every worker whose files need it (the session's
real-records catalog, for instance, serves nine files). `built_once` builds it under the
session's shared temporary directory while holding a file lock: the first worker to ask builds,
the others wait for it and then read the same files. Catalogs built this way are only read by
the tests; a test that changes one works on its own copy.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

_DONE = ".built"


def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory every worker of this session shares (and no other session): under xdist each
    worker's base temp is `pytest-N/popen-gwK`, so their parent; without xdist, the base temp."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The directory `name`, filled by `build(directory)` the first time any worker of the
    session asks for it. A build that raises leaves nothing behind: the next asker tries again
    (and fails the same way, in its own test)."""
    root = session_dir(tmp_path_factory) / "built-once"
    root.mkdir(exist_ok=True)
    target = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (target / _DONE).exists():
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir()
                try:
                    build(target)
                except BaseException:
                    shutil.rmtree(target, ignore_errors=True)
                    raise
                (target / _DONE).touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target
