"""The fetch client against a local HTTP server on 127.0.0.1 (never the internet).

The server serves gzip copies of two shared example pairs, written into tmp_path, and can inject
one-shot faults per URL path: a connection dropped half-way, corrupted bytes, a Range header
ignored, an HTTP 500.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cryomaps.cli import main
from cryomaps.data.fetch import (
    DEFAULT_EMDB_URL,
    DEFAULT_PDB_URL,
    FetchOptions,
    fetch_manifest,
    url_fields,
)
from cryomaps.data.manifest import ManifestEntry, read_manifest, write_manifest

MANIFEST_DIR = Path(__file__).resolve().parents[1] / "data_manifests"
# Two small shared pairs: (emdb_id, pdb_id, map file, model file) under DATA_ROOT/pairs.
SERVED_PAIRS = (
    ("EMD-21457", "6vyb", "EMD-21457_spike_NTD_segment/emd_21457_seg.mrc", "EMD-21457_spike_NTD_segment/6vyb_Ndom.pdb"),
    ("EMD-2566", "3j6b", "EMD-2566_mitoribosome_chain9_segment/2566_3J6B_9.mrc", "EMD-2566_mitoribosome_chain9_segment/3J6B_9.pdb"),
)
MISSING_ENTRY = ManifestEntry("EMD-99999", "9zzz", 3.0, True, "train")


class FaultyServer(ThreadingHTTPServer):
    """Serves files under ``root`` by URL path; records requests; injects queued one-shot faults."""

    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), FaultyHandler)
        self.root = root
        self.faults: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def requests_for(self, url_path: str) -> list[str | None]:
        """Range headers (or None) of the requests made for one URL path."""
        return [range_header for path, range_header in self.requests if path == url_path]


class FaultyHandler(BaseHTTPRequestHandler):
    """GET with single-range support (``bytes=N-``) and the faults queued for the path."""

    def do_GET(self):
        server = self.server
        with server.lock:
            server.requests.append((self.path, self.headers.get("Range")))
            queued = server.faults.get(self.path, [])
            fault = queued.pop(0) if queued else None
        file = server.root / self.path.lstrip("/")
        if fault == "error500":
            self.send_error(500)
        elif not file.is_file():
            self.send_error(404)
        else:
            self._send_body(file.read_bytes(), fault)

    def _send_body(self, body: bytes, fault: str | None):
        if fault == "corrupt":
            body = bytes(byte ^ 0xFF for byte in body[:4096]) + body[4096:]
        range_header = self.headers.get("Range")
        start = int(range_header[len("bytes="):-1]) if range_header and fault != "ignore_range" else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        self.wfile.write(payload[: len(payload) // 2] if fault == "drop_half" else payload)

    def log_message(self, format, *args):
        """Keep test output quiet."""


@pytest.fixture
def served(data_root, tmp_path):
    """A running FaultyServer with gzip copies of SERVED_PAIRS; shut down after the test."""
    www = tmp_path / "www"
    for emdb_id, pdb_id, map_file, model_file in SERVED_PAIRS:
        _write_gzip(data_root / "pairs" / map_file, www / "emdb" / emdb_id / f"emd_{emdb_id[4:]}.map.gz")
        _write_gzip(data_root / "pairs" / model_file, www / "pdb" / f"{pdb_id}.pdb.gz")
    server = FaultyServer(www)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _write_gzip(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(gzip.compress(source.read_bytes(), compresslevel=1, mtime=0))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _options(server: FaultyServer, **overrides) -> FetchOptions:
    """Options pointing at the local server, with tiny delays."""
    settings = dict(
        emdb_url=server.base_url + "/emdb/{emdb_id}/emd_{emdb_number}.map.gz",
        pdb_url=server.base_url + "/pdb/{pdb_id}.pdb.gz",
        workers=2,
        retries=2,
        backoff_s=0.001,
        timeout_s=5,
        progress=False,
    )
    return FetchOptions(**{**settings, **overrides})


def _entries(server: FaultyServer, with_sha256: bool = False) -> list[ManifestEntry]:
    """Manifest entries of the served pairs, optionally with the served files' SHA-256."""
    entries = []
    for emdb_id, pdb_id, _, _ in SERVED_PAIRS:
        map_sha = _sha256(server.root / "emdb" / emdb_id / f"emd_{emdb_id[4:]}.map.gz") if with_sha256 else None
        model_sha = _sha256(server.root / "pdb" / f"{pdb_id}.pdb.gz") if with_sha256 else None
        entries.append(ManifestEntry(emdb_id, pdb_id, 3.2, False, "train", map_sha256=map_sha, model_sha256=model_sha))
    return entries


def _map_url_path(emdb_id: str) -> str:
    return f"/emdb/{emdb_id}/emd_{emdb_id[4:]}.map.gz"


def test_default_url_templates_follow_the_wwpdb_archive_layout():
    fields = url_fields(ManifestEntry("EMD-0136", "6h3n", 3.3, True, "val"))
    assert DEFAULT_EMDB_URL.format(**fields) == (
        "https://files.wwpdb.org/pub/emdb/structures/EMD-0136/map/emd_0136.map.gz"
    )
    assert DEFAULT_PDB_URL.format(**fields) == (
        "https://files.wwpdb.org/pub/pdb/data/structures/divided/mmCIF/h3/6h3n.cif.gz"
    )


def test_fetch_downloads_pairs_and_writes_manifest_and_report(served, tmp_path):
    out = tmp_path / "out"
    summary = fetch_manifest(_entries(served), out, _options(served))
    assert not summary.failed
    fetched = read_manifest(out / "manifest.csv")
    assert [entry.emdb_id for entry in fetched] == ["EMD-21457", "EMD-2566"]
    for entry in fetched:
        assert entry.map_path == out / "maps" / f"emd_{entry.emdb_number}.map.gz"
        assert entry.model_path == out / "models" / f"{entry.pdb_id}.pdb.gz"
        assert _sha256(entry.map_path) == entry.map_sha256 == _sha256(served.root / "emdb" / entry.emdb_id / entry.map_path.name)
        assert _sha256(entry.model_path) == entry.model_sha256
    with open(out / "fetch_report.csv", newline="") as handle:
        assert [row["status"] for row in csv.DictReader(handle)] == ["ok", "ok"]
    assert not list(out.rglob("*.part"))


def test_second_run_is_served_from_cache(served, tmp_path):
    out = tmp_path / "out"
    fetch_manifest(_entries(served), out, _options(served))
    requests_after_first_run = len(served.requests)
    assert requests_after_first_run == 4
    again = fetch_manifest(_entries(served), out, _options(served))
    assert {outcome.map.status for outcome in again.outcomes} == {"cached"}
    (out / "checksums.json").unlink()  # the manifest's own checksums also identify cached files
    third = fetch_manifest(_entries(served, with_sha256=True), out, _options(served))
    assert {outcome.model.status for outcome in third.outcomes} == {"cached"}
    assert len(served.requests) == requests_after_first_run


def test_dropped_connection_is_resumed_with_a_range_request(served, tmp_path):
    map_path = _map_url_path("EMD-21457")
    served.faults[map_path] = ["drop_half"]
    summary = fetch_manifest(_entries(served)[:1], tmp_path / "out", _options(served))
    assert not summary.failed
    size = (served.root / map_path.lstrip("/")).stat().st_size
    assert served.requests_for(map_path) == [None, f"bytes={size // 2}-"]
    outcome = summary.outcomes[0].map
    assert outcome.sha256 == _sha256(outcome.path) == _sha256(served.root / map_path.lstrip("/"))
    assert "connection closed after" in outcome.retried[0]


def test_server_ignoring_range_restarts_from_zero(served, tmp_path):
    map_path = _map_url_path("EMD-21457")
    served.faults[map_path] = ["drop_half", "ignore_range"]
    summary = fetch_manifest(_entries(served)[:1], tmp_path / "out", _options(served))
    outcome = summary.outcomes[0].map
    assert outcome.status == "downloaded"
    assert _sha256(outcome.path) == _sha256(served.root / map_path.lstrip("/"))


def test_corrupted_download_is_caught_by_sha256_and_fetched_again(served, tmp_path):
    map_path = _map_url_path("EMD-2566")
    served.faults[map_path] = ["corrupt"]
    entries = _entries(served, with_sha256=True)
    summary = fetch_manifest(entries, tmp_path / "out", _options(served))
    assert not summary.failed
    assert served.requests_for(map_path) == [None, None]
    outcome = summary.outcomes[1].map
    assert "sha256 mismatch" in outcome.retried[0]
    assert _sha256(outcome.path) == entries[1].map_sha256


def test_corrupted_gzip_without_checksum_is_caught(served, tmp_path):
    map_path = _map_url_path("EMD-2566")
    served.faults[map_path] = ["corrupt"]
    summary = fetch_manifest(_entries(served)[1:], tmp_path / "out", _options(served))
    assert "corrupt gzip data" in summary.outcomes[0].map.retried[0]
    assert summary.outcomes[0].map.status == "downloaded"


def test_missing_entry_fails_alone_and_is_not_retried(served, tmp_path):
    out = tmp_path / "out"
    summary = fetch_manifest(_entries(served) + [MISSING_ENTRY], out, _options(served))
    assert [outcome.ok for outcome in summary.outcomes] == [True, True, False]
    assert "HTTP 404" in summary.failed[0].errors()
    assert len(served.requests_for(_map_url_path("EMD-99999"))) == 1
    assert [entry.emdb_id for entry in read_manifest(out / "manifest.csv")] == ["EMD-21457", "EMD-2566"]
    with open(out / "fetch_report.csv", newline="") as handle:
        failed_row = list(csv.DictReader(handle))[2]
    assert failed_row["status"] == "failed" and failed_row["map_status"] == "failed"
    assert "HTTP 404" in failed_row["error"]


def test_server_errors_are_retried_until_the_limit(served, tmp_path):
    map_path = _map_url_path("EMD-21457")
    served.faults[map_path] = ["error500"] * 5
    summary = fetch_manifest(_entries(served)[:1], tmp_path / "out", _options(served, retries=1))
    assert "HTTP 500" in summary.outcomes[0].map.error and "after 2 attempts" in summary.outcomes[0].map.error
    assert len(served.requests_for(map_path)) == 2
    assert not list((tmp_path / "out" / "maps").iterdir())


def test_local_manifest_paths_are_verified_not_downloaded(example_entries, tmp_path):
    entries = example_entries[1:3]
    summary = fetch_manifest(entries, tmp_path / "out", FetchOptions(progress=False))
    assert {o.map.status for o in summary.outcomes} == {o.model.status for o in summary.outcomes} == {"local"}
    assert read_manifest(tmp_path / "out" / "manifest.csv")[0].map_path == entries[0].map_path


def test_cli_exits_non_zero_with_a_readable_report(served, tmp_path, capsys):
    manifest = tmp_path / "pairs.csv"
    write_manifest(_entries(served) + [MISSING_ENTRY], manifest)
    options = _options(served)
    status = main([
        "fetch", str(manifest), "--out", str(tmp_path / "out"),
        "--emdb-url", options.emdb_url, "--pdb-url", options.pdb_url,
        "--retries", "0", "--workers", "2", "--no-progress",
    ])
    printed = capsys.readouterr().out
    assert status == 1
    assert "3 entries" in printed and "2 ok, 1 failed" in printed
    assert "FAILED EMD-99999_9zzz: map: HTTP 404" in printed
    assert "fetch_report.csv" in printed


def test_cli_rejects_a_template_with_an_unknown_field(tmp_path, capsys):
    status = main(["fetch", str(MANIFEST_DIR / "template.csv"), "--out", str(tmp_path), "--emdb-url", "http://h/{emdb}"])
    assert status == 2
    assert "unknown field {emdb}" in capsys.readouterr().err
