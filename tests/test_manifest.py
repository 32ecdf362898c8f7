"""Manifests: the shipped ones parse and match their sources; bad ones give one clear error."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from cryomaps.data.manifest import (
    ManifestEntry,
    filter_split,
    read_csv_rows,
    read_manifest,
    resolve_listed_path,
    sha256_of as manifest_sha256_of,
    write_manifest,
)
from cryomaps.errors import InputError

MANIFEST_DIR = Path(__file__).resolve().parents[1] / "data_manifests"
HEADER = "emdb_id,pdb_id,reported_resolution_A,resolution_certain,split"
GOOD_ROW = "EMD-20026,3ajo,1.75,yes,train"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["struc2mapgan_train", "struc2mapgan_val", "example_pairs", "template"])
def test_shipped_manifests_parse(name, tmp_path):
    entries = read_manifest(MANIFEST_DIR / f"{name}.csv", data_root=tmp_path)
    assert entries
    assert all(entry.emdb_id.startswith("EMD-") for entry in entries)


def test_struc2mapgan_lists_have_published_sizes():
    train = read_manifest(MANIFEST_DIR / "struc2mapgan_train.csv")
    val = read_manifest(MANIFEST_DIR / "struc2mapgan_val.csv")
    assert (len(train), len(val)) == (134, 15)
    assert {entry.split for entry in train} == {"train"} and {entry.split for entry in val} == {"val"}
    assert all(entry.resolution_certain and entry.reported_resolution_A for entry in train + val)


@pytest.mark.parametrize("split", ["train", "val"])
def test_struc2mapgan_lists_match_reference(split, data_root):
    with open(data_root / "reference" / f"struc2mapgan_{split}_pairs.csv", newline="") as handle:
        reference = [(f"EMD-{r['EMID']}", r["PDBID"].lower(), float(r["Resolution"])) for r in csv.DictReader(handle)]
    entries = read_manifest(MANIFEST_DIR / f"struc2mapgan_{split}.csv")
    assert [(e.emdb_id, e.pdb_id, e.reported_resolution_A) for e in entries] == reference


def test_example_pairs_point_at_shared_files_with_right_checksums(data_root):
    entries = read_manifest(MANIFEST_DIR / "example_pairs.csv", data_root=data_root)
    assert len(entries) == 8
    for entry in entries:
        assert entry.map_path.is_file() and entry.model_path.is_file(), entry.label
        assert sha256_of(entry.map_path) == entry.map_sha256, entry.label
        assert sha256_of(entry.model_path) == entry.model_sha256, entry.label
    assert {entry.name for entry in filter_split(entries, "val")} == {
        "EMD-3488_hemoglobin",
        "EMD-21457_spike_NTD_segment",
    }
    assert not any(entry.resolution_certain for entry in entries)


def test_relative_paths_resolve_against_data_root(tmp_path):
    entries = read_manifest(MANIFEST_DIR / "example_pairs.csv", data_root=tmp_path)
    assert entries[0].map_path == tmp_path.resolve() / "pairs" / "EMD-20026_apoferritin_crop" / "emd20026_prot.mrc"


def test_csv_rows_carry_the_line_each_row_ends_on(tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes("\ufeffname,file\na,x.npz\n\nb,\"two\nlines\"\nc,z\n".encode())
    header, rows = read_csv_rows(path, "table", ("name",))
    assert header == ["name", "file"]
    assert [(line, row["name"], row["file"]) for line, row in rows] == [(2, "a", "x.npz"), (5, "b", "two\nlines"), (6, "c", "z")]
    with pytest.raises(InputError, match="table.csv: missing column\\(s\\) split in the header line"):
        read_csv_rows(path, "table", ("name", "split"))
    with pytest.raises(InputError, match="absent.csv: curated index not found"):
        read_csv_rows(tmp_path / "absent.csv", "curated index")


def test_listed_paths_are_relative_to_the_base_the_table_names(tmp_path):
    assert resolve_listed_path("", tmp_path) is None
    assert resolve_listed_path("maps/a.mrc", tmp_path) == tmp_path / "maps" / "a.mrc"
    assert resolve_listed_path("/abs/a.mrc", tmp_path) == Path("/abs/a.mrc")
    assert resolve_listed_path("~/a.mrc", tmp_path) == Path.home() / "a.mrc"


def test_file_digest_matches_hashlib_on_a_file_longer_than_one_block(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 9000)  # 2.3 MB: three hashing blocks
    assert manifest_sha256_of(path) == sha256_of(path)


def test_write_then_read_round_trip(tmp_path):
    entry = ManifestEntry(
        "EMD-0136", "6h3n", 3.3, True, "test", map_path=tmp_path / "maps" / "emd_0136.map.gz", name="x"
    )
    write_manifest([entry], tmp_path / "m.csv", paths_relative_to=tmp_path)
    assert "maps/emd_0136.map.gz" in (tmp_path / "m.csv").read_text()
    (read,) = read_manifest(tmp_path / "m.csv", data_root=tmp_path)
    assert read == ManifestEntry(
        "EMD-0136", "6h3n", 3.3, True, "test", map_path=tmp_path.resolve() / "maps" / "emd_0136.map.gz", name="x", line=2
    )
    assert read.emdb_number == "0136"


@pytest.mark.parametrize(
    "header, row, problem",
    [
        ("emdb_id,pdb_id,split", "EMD-20026,3ajo,train", "missing column(s) reported_resolution_A, resolution_certain"),
        (HEADER + ",mappath", GOOD_ROW + ",x.mrc", "unknown column(s) 'mappath'"),
        (HEADER, "20026,3ajo,1.75,yes,train", "line 3: bad emdb_id '20026'"),
        (HEADER, "EMD-20026,3aj,1.75,yes,train", "line 3: bad pdb_id '3aj'"),
        (HEADER, "EMD-20026,3ajo,high,yes,train", "line 3: reported_resolution_A 'high' is not a number"),
        (HEADER, "EMD-20026,3ajo,1.75,maybe,train", "line 3: resolution_certain must be yes or no"),
        (HEADER, "EMD-20026,3ajo,,yes,train", "line 3: resolution_certain is yes but reported_resolution_A is empty"),
        (HEADER, "EMD-20026,3ajo,1.75,yes,training", "line 3: unknown split 'training'"),
        (HEADER + ",map_sha256", GOOD_ROW + ",abc", "line 3: map_sha256 'abc' is not a SHA-256"),
        (HEADER, GOOD_ROW + ",extra", "line 3: more fields than columns"),
    ],
)
def test_bad_rows_name_file_line_and_problem(tmp_path, header, row, problem):
    first_row = "EMD-3488,5ni1,3.2,no,val" + "," * (header.count(",") - HEADER.count(","))
    path = tmp_path / "bad.csv"
    path.write_text(f"{header}\n{first_row}\n{row}\n")
    with pytest.raises(InputError) as raised:
        read_manifest(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert problem in str(raised.value)


def test_duplicate_rows_are_rejected(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text(f"{HEADER}\n{GOOD_ROW}\n{GOOD_ROW}\n")
    with pytest.raises(InputError, match="line 3: duplicate of line 2"):
        read_manifest(path)


def test_missing_and_empty_manifests(tmp_path):
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty manifest"):
        read_manifest(tmp_path / "empty.csv")


def test_filter_split_rejects_unknown_split():
    with pytest.raises(InputError, match="unknown split 'dev'"):
        filter_split([], "dev")


@pytest.mark.parametrize(
    "content, problem",
    [
        (f"{HEADER}\n".encode() + "EMD-20026,3ajo,1.75,yes,tr\u00e9in\n".encode("latin-1"), "line 2: not UTF-8 text (byte 0xe9)"),
        (f"{HEADER}\n,,,,\n".encode(), "line 2: empty row"),
        (f"{HEADER}\nEMD-20026,3ajo\n".encode(), "line 2: fewer fields than columns in the header (2 of 5)"),
        (f"{HEADER}\n".encode(), "no pairs listed (only a header line)"),
    ],
)
def test_unreadable_or_empty_manifests_give_one_clear_error(tmp_path, content, problem):
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    with pytest.raises(InputError) as raised:
        read_manifest(path, data_root=tmp_path)
    assert str(raised.value).startswith(f"{path}: {problem}") and "\n" not in str(raised.value)


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"{HEADER}\n{GOOD_ROW}\n".encode())
    (entry,) = read_manifest(path, data_root=tmp_path)
    assert entry.emdb_id == "EMD-20026"


def _manifest_with_local_file(tmp_path: Path, digest: str) -> tuple[Path, Path]:
    local = tmp_path / "map.mrc"
    local.write_bytes(b"not really a map, but a file with a digest")
    path = tmp_path / "local.csv"
    path.write_text(f"{HEADER},map_path,map_sha256\n{GOOD_ROW},map.mrc,{digest}\n")
    return path, local


def test_local_file_not_matching_its_sha256_is_an_error_naming_both_digests(tmp_path):
    path, local = _manifest_with_local_file(tmp_path, "ab" * 32)
    actual = sha256_of(local)
    with pytest.raises(InputError) as raised:
        read_manifest(path, data_root=tmp_path)
    message = str(raised.value)
    assert message.startswith(f"{local.resolve()}: ") and "\n" not in message
    assert actual in message and "ab" * 32 in message and f"{path}, line 2" in message
    assert read_manifest(path, data_root=tmp_path, check_sha256=False)[0].map_path == local.resolve()


def test_matching_and_absent_files_pass_the_check(tmp_path):
    path, local = _manifest_with_local_file(tmp_path, hashlib.sha256(b"not really a map, but a file with a digest").hexdigest())
    assert read_manifest(path, data_root=tmp_path)[0].map_sha256 == sha256_of(local)
    local.unlink()  # not there (yet): the reader of the file reports it missing
    assert read_manifest(path, data_root=tmp_path)[0].map_path == local.resolve()


def test_evaluate_refuses_a_manifest_whose_file_does_not_match(tmp_path, capsys):
    from cryomaps.cli import main

    path, local = _manifest_with_local_file(tmp_path, "cd" * 32)
    out = tmp_path / "report"
    assert main(["evaluate", f"manifest={path}", f"out={out}", f"data_root={tmp_path}"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and str(local.resolve()) in error and "cd" * 32 in error
    assert not out.exists()


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"emdb_id,pdb_id,split\nEMD-20026,3ajo,train\n", "missing column(s) reported_resolution_A, resolution_certain"),
        (f"{HEADER}\n".encode() + "EMD-20026,3ajo,1.75,yes,tr\u00e9in\n".encode("latin-1"), "not UTF-8 text"),
        (f"{HEADER}\n{GOOD_ROW}\n,,,,\n".encode(), "line 3: empty row"),
    ],
)
def test_curate_refuses_a_bad_manifest_in_one_line_writing_nothing(tmp_path, capsys, content, problem):
    from cryomaps.cli import main

    path = tmp_path / "m.csv"
    path.write_bytes(content)
    out = tmp_path / "out"
    assert main(["curate", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"cryomaps curate: error: {path}: ") and problem in error and "\n" not in error
    assert not out.exists()
