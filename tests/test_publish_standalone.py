"""A published catalog stands alone: served from outside the repository by a virtual environment
holding only Datasette and its plugins, it answers RIS, BibTeX and CSL-JSON exactly as the
harvester's own exporter writes them (issue 18: the plugin used to reach harvest/ through
sys.path, so a published copy lost its reference-manager formats without a word)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import socket
import sqlite3
import subprocess
import time
import venv

import pytest
import requests

from harvest import export
from tests.conftest import RECORDS, ROOT, run_cli

# What a published folder needs besides the Python standard library: Datasette and the
# plugins its configuration names, at the versions the project is tested with.
SERVING_PACKAGES = ["datasette", "datasette-atom", "datasette-block-robots", "feedgen"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    work = tmp_path_factory.mktemp("standalone")
    catalog = work / "catalog.db"
    imported = run_cli("import", *sorted(map(str, RECORDS.glob("*.xml"))), "--db", catalog)
    assert imported.returncode == 0, imported.stderr[-2000:]
    spec = importlib.util.spec_from_file_location("publish", ROOT / "db" / "publish.py")
    assert spec is not None and spec.loader is not None
    publish = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(publish)
    site = work / "site"
    publish.build(catalog, site)
    return catalog, site


@pytest.fixture(scope="module")
def bare_datasette(tmp_path_factory):
    """A new virtual environment with Datasette and its plugins only (no ketamine-catalog)."""
    env_dir = tmp_path_factory.mktemp("bare") / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in SERVING_PACKAGES]
    done = subprocess.run(
        [env_dir / "bin" / "python", "-m", "pip", "install", "--quiet", *pins],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    missing = subprocess.run(
        [env_dir / "bin" / "python", "-c", "import harvest"],
        cwd=env_dir,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
    assert missing.returncode != 0, "the bare environment must not hold the harvester"
    return env_dir


def test_a_published_copy_serves_every_export_format_with_only_datasette_installed(published, bare_datasette):
    catalog, site = published
    port = free_port()
    # Started from the published folder's parent, far from the checkout: nothing of the repository
    # is on its path.
    server = subprocess.Popen(
        [bare_datasette / "bin" / "datasette", "serve", str(site), "--port", str(port)],
        cwd=site.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(site.parent)},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(base + "/-/versions.json", timeout=2)
                break
            except requests.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        "the published catalog did not start:\n"
                        + (server.stdout.read() if server.poll() is not None else "")
                    )
                time.sleep(0.2)
        conn = sqlite3.connect(catalog)
        conn.row_factory = sqlite3.Row
        # Five records, each in every format, byte for byte what the exporter writes.
        pmids = [row[0] for row in conn.execute("select pmid from articles order by pmid desc limit 5")]
        for pmid in pmids:
            records = export.load_records(conn, [pmid])
            for extension, fmt in (("ris", "ris"), ("bib", "bibtex"), ("csljson", "csl-json")):
                answer = requests.get(f"{base}/catalog/articles/{pmid}.{extension}", timeout=30)
                assert answer.status_code == 200, (pmid, extension, answer.text[:300])
                assert answer.text == export.render(records, fmt), (pmid, extension)
        conn.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
