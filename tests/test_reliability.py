"""Reliability battery: bad input through every subcommand that reads it (issue #16).

Every bad input is generated here, in a temporary folder, from small real files of the shared data
(the 2VA0 chain, 800 atoms; the EMD-21457 segment, 47 x 40 x 48 voxels, with its model). Each case
runs ``cryomaps.cli.main`` in-process and must:

- return 2 (not raise: an exception escaping ``main`` is what a user sees as a traceback);
- print exactly one line on stderr that names the option or file and the problem;
- leave the folder exactly as it was (no output written, no input changed, no temporary left).

The kill tests run ``cryomaps simulate`` in a subprocess and interrupt a large write with SIGTERM,
SIGINT or SIGKILL at several moments: the old output stays intact or is replaced whole, and no
temporary file survives the next write.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from cryomaps.cli import main
from cryomaps.io import DensityMap, read_map, write_map
from cryomaps.io.weights import bundled_weights_path

SMALL_MODEL = "2va0A_99res.pdb.gz"
PAIR = "EMD-21457_spike_NTD_segment"
PAIR_MAP, PAIR_MODEL = "emd_21457_seg.mrc", "6vyb_Ndom.pdb"
TRACEBACK = "Traceback"
FITTING_COMMANDS = ["fit", "refine"]
"""The model-in-map commands (MODEL MAP -o OUT --resolution D)."""


# ---------------------------------------------------------------- the bad inputs


def _pdb_atom_lines(text: str) -> tuple[list[str], list[str]]:
    lines = text.splitlines()
    return lines, [index for index, line in enumerate(lines) if line.startswith(("ATOM  ", "HETATM"))]


def _edited_pdb(text: str, columns: slice, value: str, every_atom: bool = False) -> str:
    """``text`` with one PDB field (``columns``) of the first atom (or of every atom) replaced."""
    lines, atoms = _pdb_atom_lines(text)
    for index in atoms if every_atom else atoms[:1]:
        line = lines[index].ljust(80)
        lines[index] = line[: columns.start] + value.rjust(columns.stop - columns.start) + line[columns.stop :]
    return "\n".join(lines) + "\n"


X_FIELD, OCCUPANCY_FIELD, B_FIELD, ELEMENT_FIELD = slice(30, 38), slice(54, 60), slice(60, 66), slice(76, 78)


def _write_cif_with_first_atom_at(source_text: str, path: Path, position) -> Path:
    import gemmi

    structure = gemmi.read_pdb_string(source_text)
    structure.setup_entities()
    structure[0][0][0][0].pos = gemmi.Position(*position)
    structure.make_mmcif_document().write_file(str(path))
    return path


def _write_raw_map(path: Path, data: np.ndarray, mode: int | None = None) -> Path:
    """An MRC file written with mrcfile directly (so that NaN, complex or wrong MODE headers get through)."""
    with mrcfile.new(path, overwrite=True) as mrc, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mrcfile warns about the NaN values we mean to write
        mrc.set_data(data)
        mrc.voxel_size = 1.0
        if mode is not None:
            mrc.header.mode = mode
    return path


def _bad_weights(folder: Path) -> dict[str, Path]:
    from cryomaps.io.weights import WEIGHTS_FORMAT

    paths = {name: folder / f"{name}.pt" for name in ("bare_tensor", "no_hyperparameters", "empty")}
    torch.save(torch.zeros(3), paths["bare_tensor"])
    torch.save({"format": WEIGHTS_FORMAT, "kind": "generator", "state_dict": {}}, paths["no_hyperparameters"])
    for kind in ("generator", "cryores"):
        content = torch.load(bundled_weights_path(kind), weights_only=True)
        name = next(iter(content["state_dict"]))
        content["state_dict"][name] = torch.zeros(3)
        paths[f"wrong_shapes_{kind}"] = folder / f"wrong_shapes_{kind}.pt"
        torch.save(content, paths[f"wrong_shapes_{kind}"])
    paths["empty"].write_bytes(b"")
    return paths


@pytest.fixture(scope="module")
def bad(data_root, tmp_path_factory) -> dict[str, Path]:
    """Every input file of the battery, good and bad, in one folder (name -> path)."""
    folder = tmp_path_factory.mktemp("battery")
    text = gzip.open(data_root / "structures" / SMALL_MODEL, "rt").read()
    files: dict[str, Path] = {}

    def write(name: str, content: str) -> None:
        files[name] = folder / name
        files[name].write_text(content)

    write("model.pdb", text)
    files["model.pdb.gz"] = folder / "model.pdb.gz"
    files["model.pdb.gz"].write_bytes(gzip.compress(text.encode()))
    os.symlink(files["model.pdb"], folder / "model_link.pdb")
    files["model_link.pdb"] = folder / "model_link.pdb"
    write("nan_occupancy.pdb", _edited_pdb(text, OCCUPANCY_FIELD, "nan"))
    write("occupancy_2.pdb", _edited_pdb(text, OCCUPANCY_FIELD, "2.00"))
    write("zero_occupancy.pdb", _edited_pdb(text, OCCUPANCY_FIELD, "0.00", every_atom=True))
    write("negative_b.pdb", _edited_pdb(text, B_FIELD, "-20.00"))
    write("nan_b.pdb", _edited_pdb(text, B_FIELD, "nan"))
    write("overflow.pdb", _edited_pdb(text, X_FIELD, "********"))
    write("nan_x.pdb", _edited_pdb(text, X_FIELD, "nan"))
    write("unknown_element.pdb", _edited_pdb(text, ELEMENT_FIELD, "Xx"))
    write("far_away.pdb", _edited_pdb(text, X_FIELD, "9000.000"))
    files["huge.cif"] = _write_cif_with_first_atom_at(text, folder / "huge.cif", (1e9, 0.0, 0.0))
    files["nan.cif"] = _write_cif_with_first_atom_at(text, folder / "nan.cif", (float("nan"), 0.0, 0.0))
    write("empty.pdb", "")
    files["not_utf8.csv"] = folder / "not_utf8.csv"
    files["not_utf8.csv"].write_bytes("name,emdb_id\nm\xe9\xff,EMD-1\n".encode("latin-1"))

    pair = data_root / "pairs" / PAIR
    reference = read_map(pair / PAIR_MAP)
    files["ref.mrc"] = write_map(folder / "ref.mrc", reference)
    write("pair_model.pdb", (pair / PAIR_MODEL).read_text())
    rng = np.random.default_rng(0)
    for index in (1, 2):
        noisy = reference.data + rng.normal(0, float(reference.data.std()), reference.data.shape)
        files[f"half{index}.mrc"] = write_map(folder / f"half{index}.mrc", DensityMap(noisy, reference.voxel_size, reference.origin))
    shifted = DensityMap(reference.data, reference.voxel_size, reference.origin + 1000.0)
    files["elsewhere.mrc"] = write_map(folder / "elsewhere.mrc", shifted)
    files["zeros.mrc"] = write_map(folder / "zeros.mrc", DensityMap(np.zeros((32, 32, 32)), 1.0, 0.0))
    files["constant.mrc"] = write_map(folder / "constant.mrc", DensityMap(np.full((32, 32, 32), 3.0), 1.0, 0.0))
    files["one_voxel.mrc"] = write_map(folder / "one_voxel.mrc", DensityMap(np.ones((1, 1, 1)), 1.0, 0.0))
    files["nan.mrc"] = _write_raw_map(folder / "nan.mrc", np.full((8, 8, 8), np.nan, dtype=np.float32))
    files["complex.mrc"] = _write_raw_map(folder / "complex.mrc", np.ones((8, 8, 8), dtype=np.complex64))
    files["mode6.mrc"] = _write_raw_map(folder / "mode6.mrc", rng.normal(size=(8, 8, 8)).astype(np.float32), mode=6)
    files["text.mrc"] = folder / "text.mrc"
    files["text.mrc"].write_text("not a map\n" * 200)
    files.update(_bad_weights(folder))
    files["folder"] = folder
    (folder / "a_directory").mkdir()
    files["a_directory"] = folder / "a_directory"
    read_only = folder / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    files["read_only"] = read_only
    files["read_only.mrc"] = write_map(folder / "read_only.mrc", DensityMap(np.ones((4, 4, 4)), 1.0, 0.0))
    files["read_only.mrc"].chmod(0o444)
    _write_checksum_manifests(folder, data_root, files)
    return files


def _write_checksum_manifests(folder: Path, data_root: Path, files: dict) -> None:
    """A manifest row whose map_sha256 does not match the file, one whose model_sha256 does not, and
    a correct one (for bad report settings)."""
    pair = data_root / "pairs" / PAIR
    digest = hashlib.sha256((pair / PAIR_MAP).read_bytes()).hexdigest()
    model_digest = hashlib.sha256((pair / PAIR_MODEL).read_bytes()).hexdigest()
    header = "name,emdb_id,pdb_id,reported_resolution_A,resolution_certain,split,map_path,model_path,map_sha256,model_sha256,notes\n"
    rows = {
        "wrong_map_sha.csv": f"spike,EMD-21457,6vyb,3.2,no,val,{pair / PAIR_MAP},{pair / PAIR_MODEL},{'0' * 64},{model_digest},\n",
        "wrong_model_sha.csv": f"spike,EMD-21457,6vyb,3.2,no,val,{pair / PAIR_MAP},{pair / PAIR_MODEL},{digest},{'0' * 64},\n",
        "spike.csv": f"spike,EMD-21457,6vyb,3.2,no,val,{pair / PAIR_MAP},{pair / PAIR_MODEL},{digest},{model_digest},\n",
    }
    for name, row in rows.items():
        files[name] = folder / name
        files[name].write_text(header + row)


# ---------------------------------------------------------------- running a case


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` with its size, mode and content digest (symbolic links by target)."""
    state = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            state[str(path)] = ("link", os.readlink(path))
        elif path.is_file():
            state[str(path)] = (path.stat().st_size, path.stat().st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            state[str(path)] = ("folder", path.stat().st_mode)
    return state


def _expand(argv: list[str], files: dict[str, Path]) -> list[str]:
    """Replace ``{name}`` by the path of battery file ``name`` and ``@name`` by a new path in the folder."""
    expanded = []
    for item in argv:
        if item.startswith("@"):
            item = str(files["folder"] / item[1:])
        expanded.append(re.sub(r"\{([\w.]+)\}", lambda match: str(files[match.group(1)]), item))
    return expanded


def assert_refused(files, capsys, argv: list[str], *phrases: str) -> str:
    """Run ``cryomaps ARGV``: status 2, one stderr line containing every phrase, folder unchanged."""
    argv = _expand(argv, files)
    before = _snapshot(files["folder"])
    capsys.readouterr()
    status = main(argv)  # an exception escaping here is a traceback for the user
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert status == 2, (argv, status, captured.err)
    assert len(lines) == 1 and TRACEBACK not in captured.err, (argv, captured.err)
    for phrase in phrases:
        assert _expand([phrase], files)[0] in lines[0], (argv, phrase, lines[0])
    assert "np.float64" not in lines[0], lines[0]
    assert _snapshot(files["folder"]) == before, (argv, "the folder changed")
    return lines[0]


# Each case: (argv, phrases that the one error line must contain). ``{name}`` is a battery file,
# ``@name`` a not-yet-existing file in the battery folder.
OUTPUT_IS_INPUT = [
    (["simulate", "{model.pdb.gz}", "-o", "{model.pdb.gz}"], ["-o", "MODEL"]),
    (["simulate", "{model.pdb}", "-o", "{model_link.pdb}"], ["MODEL"]),
    (["simulate", "{pair_model.pdb}", "--like", "{ref.mrc}", "-o", "{ref.mrc}"], ["--like"]),
    (["generate", "{model.pdb}", "-o", "{model.pdb}"], ["MODEL"]),
    (["generate", "{pair_model.pdb}", "--like", "{ref.mrc}", "-o", "{ref.mrc}"], ["--like"]),
    (["generate", "{model.pdb}", "-o", "@g.mrc", "--png", "@g.mrc"], ["--png", "-o"]),
    (["locres", "{ref.mrc}", "-o", "{ref.mrc}"], ["MAP"]),
    (["locres", "--half1", "{half1.mrc}", "--half2", "{half2.mrc}", "-o", "{half1.mrc}"], ["--half1"]),
    (["locres", "--half1", "{half1.mrc}", "--half2", "{half2.mrc}", "-o", "@l.mrc", "--png", "{half2.mrc}"], ["--half2"]),
    (["locres", "{ref.mrc}", "-o", "@x.mrc", "--mask-out", "@x.mrc"], ["--mask-out", "-o"]),
    (["evaluate", "--pred", "{half1.mrc}", "--ref", "{ref.mrc}", "--json", "{half1.mrc}"], ["--json", "--pred"]),
    (["evaluate", "--pred", "{half1.mrc}", "--ref", "{ref.mrc}", "--model", "{pair_model.pdb}", "--json", "{pair_model.pdb}"], ["--model"]),
    *[case for name in FITTING_COMMANDS for case in (
        ([name, "{pair_model.pdb}", "{ref.mrc}", "-o", "{pair_model.pdb}", "--resolution", "4"], ["MODEL"]),
        ([name, "{pair_model.pdb}", "{ref.mrc}", "-o", "{ref.mrc}", "--resolution", "4"], ["MAP"]),
        ([name, "{pair_model.pdb}", "{ref.mrc}", "-o", "@fit.cif", "--json", "@fit.cif", "--resolution", "4"], ["--json"]),
    )],
]

BAD_VALUES_IN_FILES = [
    ("nan_occupancy.pdb", "occupancy"), ("occupancy_2.pdb", "occupancy"), ("zero_occupancy.pdb", "zero occupancy"),
    ("negative_b.pdb", "B-factor"), ("nan_b.pdb", "B-factor"), ("overflow.pdb", "overflowed"),
    ("nan_x.pdb", "non-finite"), ("huge.cif", "beyond"), ("nan.cif", "non-finite"),
    ("unknown_element.pdb", "unknown element"), ("empty.pdb", "no"), ("a_directory", "is a folder"),
]
MODEL_READERS = [
    ["simulate", "{bad}", "-o", "@out.mrc"],
    ["generate", "{bad}", "-o", "@out.mrc"],
    ["evaluate", "--pred", "{half1.mrc}", "--ref", "{ref.mrc}", "--model", "{bad}"],
    ["info", "{bad}"],
    *[[name, "{bad}", "{ref.mrc}", "-o", "@fit.cif", "--resolution", "4"] for name in FITTING_COMMANDS],
]
BAD_MAPS = [
    ("nan.mrc", "NaN"), ("complex.mrc", "complex"), ("mode6.mrc", "MRC header"), ("text.mrc", "not"),
    ("zeros.mrc", "same value"), ("constant.mrc", "same value"), ("one_voxel.mrc", "too small"),
    ("a_directory", "is a folder"),
]
MAP_READERS = [
    ["simulate", "{pair_model.pdb}", "--like", "{bad}", "-o", "@out.mrc"],
    ["generate", "{pair_model.pdb}", "--like", "{bad}", "-o", "@out.mrc"],
    ["locres", "{bad}", "-o", "@out.mrc"],
    ["locres", "--half1", "{bad}", "--half2", "{half2.mrc}", "-o", "@out.mrc"],
    ["evaluate", "--pred", "{bad}", "--ref", "{ref.mrc}"],
    ["evaluate", "--pred", "{half1.mrc}", "--ref", "{bad}"],
    *[[name, "{pair_model.pdb}", "{bad}", "-o", "@fit.cif", "--resolution", "4"] for name in FITTING_COMMANDS],
]
# Maps that a reader accepts as files (info describes them) but that no computation can use.
UNUSABLE_CONTENT = {"zeros.mrc", "constant.mrc", "one_voxel.mrc"}
# A --like map only lends its grid: constant values are legitimate there (see test_constant_like_map_is_a_grid).
GRID_ONLY = {("simulate", "zeros.mrc"), ("simulate", "constant.mrc"), ("generate", "zeros.mrc"), ("generate", "constant.mrc")}

SILENT_NONSENSE = [
    (["simulate", "{far_away.pdb}", "--like", "{ref.mrc}", "-o", "@o.mrc"], ["far_away.pdb", "no atom"]),
    (["simulate", "{model.pdb}", "--like", "{ref.mrc}", "-o", "@o.mrc"], ["model.pdb", "no atom"]),
    (["generate", "{model.pdb}", "--like", "{ref.mrc}", "-o", "@o.mrc"], ["no atom"]),
    (["evaluate", "--pred", "{half1.mrc}", "--ref", "{ref.mrc}", "--model", "{model.pdb}"], ["no atom"]),
    (["evaluate", "--pred", "{elsewhere.mrc}", "--ref", "{ref.mrc}"], ["elsewhere.mrc", "overlap"]),
    (["simulate", "{far_away.pdb}", "-o", "@o.mrc", "--voxel-size", "0.1"], ["voxels", "voxel size"]),
    *[([name, "{model.pdb}", "{ref.mrc}", "-o", "@fit.cif", "--resolution", "4"], ["no atom"]) for name in FITTING_COMMANDS],
]

BAD_OPTIONS = [
    *[(["simulate", "{model.pdb}", "-o", "@o.mrc", "--resolution", value], ["--resolution"]) for value in ("inf", "nan", "0", "-3", "abc")],
    *[(["generate", "{model.pdb}", "-o", "@o.mrc", "--resolution", value], ["--resolution"]) for value in ("inf", "nan", "0", "-3")],
    *[(["evaluate", "--pred", "{half1.mrc}", "--ref", "{ref.mrc}", "--model", "{pair_model.pdb}", "--model-resolution", value],
       ["--model-resolution"]) for value in ("0", "-3", "inf")],
    *[(["simulate", "{model.pdb}", "-o", "@o.mrc", "--voxel-size", value], ["--voxel-size"]) for value in ("inf", "1e-6", "0", "nan", "-1")],
    *[(["simulate", "{model.pdb}", "-o", "@o.mrc", "--padding", value], ["--padding"]) for value in ("inf", "1e7", "nan", "-100")],
    (["simulate", "{model.pdb}", "-o", "@o.mrc", "--voxel-size", "0.01", "--padding", "9000"], ["voxels"]),
    *[(["simulate", "{model.pdb}", "-o", "@o.mrc", "--model", "molmap", "--resolution", "2", "--sigma-factor", value],
       ["--sigma-factor"]) for value in ("-1", "1e-30", "1e30")],
    *[(["simulate", "{model.pdb}", "-o", "@o.mrc", "--resolution-mode", "finite", "--resolution", value, "--voxel-size", "2"],
       ["--resolution", "Nyquist"]) for value in ("0.1", "3.9")],
    *[(["generate", "{model.pdb}", "-o", "@o.mrc", "--padding", value], ["--padding"]) for value in ("-5", "inf", "nan")],
    *[(["generate", "{model.pdb}", "-o", "@o.mrc", "--tile-size", value], ["--tile-size"]) for value in ("0", "7", "-32", "12")],
    *[(["generate", "{model.pdb}", "-o", "@o.mrc", "--overlap", value], ["--overlap"]) for value in ("48", "-1")],
    (["generate", "{model.pdb}", "-o", "@o.mrc", "--tile-size", "32", "--overlap", "32"], ["--overlap"]),
    (["generate", "{model.pdb}", "-o", "@o.mrc", "--batch-size", "0"], ["--batch-size"]),
    *[(["locres", "--half1", "{half1.mrc}", "--half2", "{half2.mrc}", "-o", "@o.mrc", "--window", value], ["--window"])
      for value in ("10000", "0", "-5", "nan", "1")],
    (["locres", "--half1", "{half1.mrc}", "--half2", "{half2.mrc}", "-o", "@o.mrc", "--step", "0"], ["--step"]),
    (["locres", "--half1", "{half1.mrc}", "--half2", "{half2.mrc}", "-o", "@o.mrc", "--threshold", "1.5"], ["--threshold"]),
    (["locres", "--half1", "{half1.mrc}", "--half2", "{half2.mrc}", "-o", "@o.mrc", "--background", "nan"], ["--background"]),
    (["locres", "{ref.mrc}", "-o", "@o.mrc", "--background", "nan"], ["--background"]),
    (["locres", "{ref.mrc}", "-o", "@o.mrc", "--batch-size", "0"], ["--batch-size"]),
    *[(["locres", "{ref.mrc}", "-o", "@o.mrc", "--overlap", value], ["--overlap"]) for value in ("32", "-1")],
    (["evaluate", "--pred", "{half1.mrc}", "--ref", "{ref.mrc}", "--model", "{pair_model.pdb}", "--mask-radius", "-3"], ["--mask-radius"]),
    *[([*command, "--device", "bogus"], ["--device"]) for command in (
        ["simulate", "{model.pdb}", "-o", "@o.mrc"], ["generate", "{model.pdb}", "-o", "@o.mrc"],
        ["locres", "{ref.mrc}", "-o", "@o.mrc"])],
    (["fetch", "{not_utf8.csv}", "--out", "@f", "--workers", "0"], ["--workers"]),
    (["fetch", "{not_utf8.csv}", "--out", "@f", "--timeout", "inf"], ["--timeout"]),
    *[([name, "{pair_model.pdb}", "{ref.mrc}", "-o", "@fit.cif", *extra], [extra[-2]]) for name in FITTING_COMMANDS
      for extra in (["--resolution", "0"], ["--resolution", "inf"], ["--resolution", "-3"],
                    ["--resolution", "4", "--device", "bogus"])],
    *[(["fit", "{pair_model.pdb}", "{ref.mrc}", "-o", "@fit.cif", "--resolution", "4", *extra], [extra[0]])
      for extra in (["--solutions", "0"], ["--angular-step", "0.1"], ["--angular-step", "nan"]) if "fit" in FITTING_COMMANDS],
    *[([name, "{pair_model.pdb}", "{ref.mrc}", "-o", "@fit.cif", "--resolution", "0.1", "--resolution-mode", "finite"],
       ["--resolution", "Nyquist"]) for name in FITTING_COMMANDS],
    (["simulate", "{model.pdb}", "-o", "@o.mrc", "--model", "molmap"], ["--resolution"]),
    (["simulate", "{model.pdb}", "-o", "@o.mrc", "--resolution-mode", "finite"], ["--resolution"]),
    (["locres", "--half1", "{half1.mrc}", "--half2", "{half2.mrc}", "-o", "@o.mrc", "--soft-edge", "-1"], ["--soft-edge"]),
    (["locres", "--half1", "{half1.mrc}", "--half2", "{half2.mrc}", "-o", "@o.mrc", "--step", "nan"], ["--step"]),
    (["locres", "--half1", "{half1.mrc}", "--half2", "{zeros.mrc}", "-o", "@o.mrc"], ["zeros.mrc"]),
    (["locres", "{ref.mrc}", "--half1", "{half1.mrc}", "--half2", "{half2.mrc}", "-o", "@o.mrc"], ["either"]),
    (["locres", "--half1", "{half1.mrc}", "-o", "@o.mrc"], ["--half2"]),
    (["evaluate", "--pred", "{half1.mrc}"], ["--ref"]),
    (["evaluate", "--pred", "{half1.mrc}", "--ref", "{ref.mrc}", "--model-resolution", "nan"], ["--model-resolution"]),
    (["train", "trainer.max_epochs=abc"], ["trainer.max_epochs"]),
    (["train", "data.manifest={folder}/missing.csv", "run_dir={folder}/run"], ["data.manifest", "missing.csv"]),
    (["finetune", "ckpt={folder}/missing.ckpt", "run_dir={folder}/run"], ["ckpt", "missing.ckpt"]),
    (["finetune", f"ckpt={bundled_weights_path('cryores')}", "run_dir={folder}/run"], ["cryores_small.pt", "task=struc2map"]),
    (["train", "trainer.accelerator=quantum"], ["trainer.accelerator"]),
    (["train", "trainer.limit_train_batches=many"], ["trainer.limit_train_batches"]),
    *[(["refine", "{pair_model.pdb}", "{ref.mrc}", "-o", "@r.cif", "--resolution", "4", "--monomer-library", folder],
       ["--monomer-library", phrase]) for folder, phrase in (("{folder}/missing", "no such folder"), ("{model.pdb}", "not a folder"))],
    *[(["train", "run_dir={folder}/run", setting], phrases) for setting, phrases in (
        ("data.patch_size=0", ["data.patch_size", "integer"]), ("data.patch_size=30", ["data.patch_size", "stride"]),
        ("data.batch_size=0", ["data.batch_size"]), ("data.samples_per_volume=0", ["data.samples_per_volume"]),
        ("data.num_workers=-1", ["data.num_workers"]), ("data.val_samples_per_volume=0", ["data.val_samples_per_volume"]),
        ("task.learning_rate=-1", ["task.learning_rate", "positive"]), ("trainer.max_epochs=-5", ["max_epochs"]),
        ("+trainer.bogus=1", ["trainer.bogus"]), ("checkpoint.every_n_train_steps=-1", ["checkpoint.every_n_train_steps"]))],
]
if not torch.cuda.is_available():
    BAD_OPTIONS += [
        (["simulate", "{model.pdb}", "-o", "@o.mrc", "--device", "cuda"], ["--device", "CUDA"]),
        (["locres", "{ref.mrc}", "-o", "@o.mrc", "--device", "cuda:0"], ["--device", "CUDA"]),
        (["train", "trainer.accelerator=gpu"], ["CUDA"]),
    ]

BAD_OUTPUTS = [
    (["simulate", "{model.pdb}", "-o", "{a_directory}"], ["folder"]),
    (["simulate", "{model.pdb}", "-o", ""], ["empty"]),
    (["simulate", "{model.pdb}", "-o", "{read_only}/o.mrc"], ["read-only"]),
    (["simulate", "{model.pdb}", "-o", "{read_only.mrc}"], ["read-only"]),
    (["simulate", "{model.pdb}", "-o", "{folder}/missing/o.mrc"], ["does not exist"]),
    (["simulate", "{model.pdb}", "-o", "@" + "n" * 300 + ".mrc"], ["255 bytes"]),
    (["generate", "{model.pdb}", "-o", "{a_directory}"], ["folder"]),
    (["locres", "{ref.mrc}", "-o", "{read_only}/o.mrc"], ["read-only"]),
    (["locres", "{ref.mrc}", "-o", "@o.mrc", "--mask-out", "{a_directory}"], ["--mask-out", "folder"]),
    (["evaluate", "--pred", "{half1.mrc}", "--ref", "{ref.mrc}", "--json", "{a_directory}"], ["--json", "folder"]),
    (["demo", "--out", "{model.pdb}"], ["not a folder"]),
    (["fetch", "{not_utf8.csv}", "--out", "{model.pdb}"], ["not a folder"]),
]

BAD_WEIGHTS = [
    *[(["generate", "{model.pdb}", "-o", "@o.mrc", "--ckpt", "{%s}" % name], ["%s.pt" % name])
      for name in ("bare_tensor", "no_hyperparameters", "wrong_shapes_generator", "empty", "wrong_shapes_cryores")],
    *[(["locres", "{ref.mrc}", "-o", "@o.mrc", "--ckpt", "{%s}" % name], ["%s.pt" % name])
      for name in ("bare_tensor", "no_hyperparameters", "wrong_shapes_cryores", "empty", "wrong_shapes_generator")],
]

MANIFEST_CASES = [
    (["curate", "{wrong_map_sha.csv}", "--out", "@c"], ["sha256"]),
    (["curate", "{wrong_model_sha.csv}", "--out", "@c"], ["sha256"]),
    (["curate", "{not_utf8.csv}", "--out", "@c"], ["not_utf8.csv"]),
    (["curate", "{wrong_map_sha.csv}", "--out", "@c", "voxel_size=0"], ["voxel_size"]),
    (["evaluate", "manifest={wrong_map_sha.csv}", "out=@e"], ["sha256"]),
    (["evaluate", "manifest={wrong_model_sha.csv}", "out=@e"], ["sha256"]),
    (["evaluate", "manifest={not_utf8.csv}", "out=@e"], ["not_utf8.csv"]),
    (["fetch", "{not_utf8.csv}", "--out", "@f"], ["not_utf8.csv"]),
    *[(["evaluate", "manifest={spike.csv}", "out=@e", setting], phrases) for setting, phrases in (
        ("tiling.tile_size=30", ["tiling.tile_size", "stride 4"]), ("tiling.tile_size=abc", ["tiling.tile_size", "integer"]),
        ("tiling.overlap=48", ["tiling.overlap", "smaller"]), ("tiling.overlap=-1", ["tiling.overlap", "integer"]),
        ("tiling.batch_size=0", ["tiling.batch_size", "integer"]), ("target_resolution=2", ["target_resolution=2", "finer", "3.2"]),
        ("generator_ckpt={not_utf8.csv}", ["not_utf8.csv", "weights"]))],
]


def _file_cases(readers, bad_files, skip=()):
    return [([item.replace("{bad}", "{%s}" % name) for item in reader], [phrase])
            for reader in readers for name, phrase in bad_files if (reader[0], name) not in skip]


ALL_CASES = {
    "output_is_input": OUTPUT_IS_INPUT,
    "bad_model_values": _file_cases(MODEL_READERS, BAD_VALUES_IN_FILES),
    "bad_maps": _file_cases(MAP_READERS, BAD_MAPS, skip=GRID_ONLY) + _file_cases([["info", "{bad}"]], [b for b in BAD_MAPS if b[0] not in UNUSABLE_CONTENT]),
    "silent_nonsense": SILENT_NONSENSE,
    "bad_options": BAD_OPTIONS,
    "bad_outputs": BAD_OUTPUTS,
    "bad_weights": BAD_WEIGHTS,
}


def _case_id(case) -> str:
    return " ".join(re.sub(r"[{}@]", "", item)[:24] for item in case[0])


@pytest.mark.parametrize("case", [case for cases in ALL_CASES.values() for case in cases], ids=_case_id)
def test_bad_input_is_refused_in_one_line(bad, capsys, case):
    argv, phrases = case
    assert_refused(bad, capsys, argv, *phrases)


@pytest.mark.parametrize("case", MANIFEST_CASES, ids=_case_id)
def test_bad_manifests_are_refused_in_one_line(bad, capsys, case):
    argv, phrases = case
    assert_refused(bad, capsys, argv, *phrases)


def test_battery_size():
    """The closing note's count: how many bad inputs the battery tries."""
    total = sum(len(cases) for cases in ALL_CASES.values()) + len(MANIFEST_CASES)
    assert total >= 299, total  # the README states 299


# ---------------------------------------------------------------- legitimate inputs, for contrast


def test_long_output_names_are_written(bad, capsys):
    """A 250-byte file name is legal: the temporary name stays within the 255-byte limit."""
    target = bad["folder"] / ("n" * 246 + ".mrc")
    assert main(["simulate", str(bad["model.pdb"]), "-o", str(target), "--voxel-size", "2"]) == 0
    assert read_map(target).data.max() > 0
    assert not [p for p in bad["folder"].iterdir() if p.name.endswith(".part")]
    target.unlink()


def test_partly_outside_model_warns_once(bad, capsys):
    """A model half outside the --like box is a legitimate (cropped) map: one warning line, exit 0."""
    import gemmi

    structure = gemmi.read_structure(str(bad["pair_model.pdb"]))
    box = read_map(bad["ref.mrc"]).grid
    structure[0].transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), gemmi.Vec3(0.7 * box.extent[0], 0, 0)))
    shifted = bad["folder"] / "shifted.pdb"
    structure.write_pdb(str(shifted))
    output = bad["folder"] / "shifted.mrc"
    capsys.readouterr()
    assert main(["simulate", str(shifted), "--like", str(bad["ref.mrc"]), "-o", str(output)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and "inside the box" in err[0], err
    shifted.unlink(), output.unlink()


def test_constant_like_map_is_a_grid(bad, capsys):
    """An empty (all-zero) --like map is a legitimate grid template: the model is rendered on it."""
    import gemmi

    structure = gemmi.read_structure(str(bad["model.pdb"]))
    structure[0].transform_pos_and_adp(gemmi.Transform(gemmi.Mat33(), -structure[0].calculate_center_of_mass() +
                                                       gemmi.Position(16, 16, 16)))
    centred, output = bad["folder"] / "centred.pdb", bad["folder"] / "on_zeros.mrc"
    structure.write_pdb(str(centred))
    assert main(["simulate", str(centred), "--like", str(bad["zeros.mrc"]), "-o", str(output)]) == 0
    rendered = read_map(output)
    assert rendered.data.shape == (32, 32, 32) and rendered.data.max() > 0
    capsys.readouterr()
    centred.unlink(), output.unlink()


# ---------------------------------------------------------------- kill tests


def _simulate_command(model: Path, output: Path, voxel_size: float) -> list[str]:
    return [sys.executable, "-m", "cryomaps.cli", "simulate", str(model), "-o", str(output),
            "--voxel-size", str(voxel_size), "--padding", "20", "--device", "cpu"]


def _interrupt_during_write(command, output: Path, sig: int, delay: float) -> int:
    """Start ``command``, wait until its temporary output appears, wait ``delay`` s, send ``sig``."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(output.parent.glob(f".{output.name}*.part")) and process.poll() is None:
        assert time.monotonic() < deadline, "the write never started"
        time.sleep(0.002)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(sig)
    process.communicate(timeout=120)
    return process.returncode


EXPECTED_SHAPE_AT_0_3_A = (259, 245, 261)
"""The grid of the 2VA0 chain at 0.3 Å with 20 Å padding (the large write being interrupted)."""


def _check_interrupted_write(tmp_path, model: Path, sig: int, delay: float):
    output = tmp_path / "big.mrc"
    old = write_map(output, DensityMap(np.arange(64, dtype=np.float32).reshape(4, 4, 4), 1.0, 0.0))
    old_bytes = old.read_bytes()
    status = _interrupt_during_write(_simulate_command(model, output, 0.3), output, sig, delay)
    if output.read_bytes() != old_bytes:  # the rename happened before the signal landed: the new map is whole
        assert read_map(output).data.shape == EXPECTED_SHAPE_AT_0_3_A
    else:
        assert status in {signal.SIGKILL: (-9,), signal.SIGTERM: (130,), signal.SIGINT: (130,)}[sig], status
    strays = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    if sig != signal.SIGKILL:
        assert not strays, strays
    # The next write of the same target (here in-process) removes what a killed process left behind.
    assert main(_simulate_command(model, output, 3.0)[3:]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert read_map(output).voxel_size[0] == 3.0


@pytest.fixture
def kill_model(data_root, tmp_path):
    model = tmp_path / "model.pdb"
    model.write_bytes(gzip.decompress((data_root / "structures" / SMALL_MODEL).read_bytes()))
    return model


def test_sigterm_during_a_large_write_keeps_the_old_file(tmp_path, kill_model):
    _check_interrupted_write(tmp_path, kill_model, signal.SIGTERM, 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_signals_at_several_moments_of_a_large_write(tmp_path, kill_model, sig, delay):
    _check_interrupted_write(tmp_path, kill_model, sig, delay)


@pytest.mark.slow
def test_a_failed_training_start_leaves_no_run_folder(bad, capsys):
    """The task is built after the run folder is written: the folder (and its new parents) must go."""
    assert_refused(bad, capsys, ["train", "run_dir={folder}/runs/new", "task=cryores", "task.lr_schedule=linear"],
                   "lr_schedule")


@pytest.mark.parametrize("argv", [
    ["info", "{nan_x.pdb}"],
    ["simulate", "{model.pdb}", "-o", "@o.mrc", "--voxel-size", "inf"],
    ["locres", "{zeros.mrc}", "-o", "@o.mrc", "--device", "cpu"],
], ids=lambda argv: " ".join(argv[:2]))
def test_bad_input_end_to_end_in_a_real_process(bad, argv):
    """What a user sees from a real process: status 2, one line on stderr, no traceback."""
    before = _snapshot(bad["folder"])
    done = subprocess.run([sys.executable, "-m", "cryomaps.cli", *_expand(argv, bad)], capture_output=True,
                          text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and TRACEBACK not in done.stderr, done.stderr
    assert _snapshot(bad["folder"]) == before


def test_lightning_information_lines_stay_off_stderr(capsys):
    """A failed run's one-line error must stand alone on stderr: Lightning's banner goes to stdout."""
    import logging

    from cryomaps.commands.train import route_lightning_messages

    route_lightning_messages()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False, used: False")
    captured = capsys.readouterr()
    assert "GPU available" in captured.out
    assert "GPU available" not in captured.err
