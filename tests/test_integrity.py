"""Integrity: golden cases carry sha256 and are verified on load; .npy is never unpickled; every write is atomic.

The last two are source checks (the simulator's files read as text): every ``np.load`` passes
``allow_pickle=False``, and no module but ``simulator/files.py`` (and the golden writer filling the temporary
directory that ``files.atomic_directory`` renames into place) writes a file.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from simulator.config import config_from_mapping
from simulator.errors import IntegrityError
from simulator.golden import case_files, load_case, write_case
from tests.conftest import REPO

SIM = REPO / "simulator"
RAW = {"name": "integ", "layer": {"input_shape": [1, 2, 3, 3], "in_channels": 2, "out_channels": 2,
                                  "kernel_size": 3, "stride": 2},
       "data": {"weight": "random", "bias": "random"}}
TENSORS = ("ifmap", "weight", "bias", "ofmap")


@pytest.fixture
def case(tmp_path: Path) -> Path:
    cfg = config_from_mapping(RAW, tmp_path)
    write_case(tmp_path / "case", case_files(cfg, cfg.layer, None))
    return tmp_path / "case"


def test_manifest_records_sha256_of_every_tensor(case: Path) -> None:
    manifest = json.loads((case / "manifest.json").read_text())
    for name in TENSORS:
        data = (case / f"{name}.npy").read_bytes()
        assert manifest["tensors"][name]["sha256"] == hashlib.sha256(data).hexdigest()


def test_intact_case_loads(case: Path) -> None:
    loaded = load_case(case)
    assert loaded is not None
    assert loaded.tensors.ifmap.shape == (1, 2, 3, 3) and loaded.ofmap.dtype == np.int32


@pytest.mark.parametrize("name", TENSORS)
def test_any_edited_tensor_is_refused(case: Path, name: str) -> None:
    path = case / f"{name}.npy"
    data = bytearray(path.read_bytes())
    data[len(data) // 2 + 100 if len(data) > 300 else -1] ^= 0x80
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=rf"{name}\.npy: sha256 checksum [0-9a-f]+\.\.\. does not match"):
        load_case(case)


def test_manifest_dtype_lie_is_refused(case: Path) -> None:
    """Checksums right, but the file is not what the manifest's dtype says."""
    arr = np.zeros((1, 2, 3, 3), dtype=np.int16)
    buf = io.BytesIO()
    np.save(buf, arr)
    (case / "ifmap.npy").write_bytes(buf.getvalue())
    manifest = json.loads((case / "manifest.json").read_text())
    manifest["tensors"]["ifmap"]["sha256"] = manifest["files"]["ifmap.npy"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (case / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match=r"ifmap\.npy: int16\[1, 2, 3, 3\], manifest says int8"):
        load_case(case)


def test_no_leftover_temporaries_after_writing(case: Path) -> None:
    assert sorted(p.name for p in case.parent.iterdir()) == ["case"]
    written = [f"{n}.{ext}" for n in TENSORS for ext in ("npy", "hex")]
    assert sorted(p.name for p in case.iterdir()) == sorted([*written, "manifest.json"])


# ---------------------------------------------------------------------------------------------- source checks


def sources() -> list[Path]:
    return sorted(SIM.rglob("*.py"))


def test_every_np_load_refuses_pickles() -> None:
    calls = []
    for path in sources():
        text = path.read_text()
        for match in re.finditer(r"np\.load\(", text):
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):  # find the closing parenthesis
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            calls.append((path.name, text[match.start():end + 1]))
    assert calls, "expected at least one np.load in simulator/"
    for name, call in calls:
        assert "allow_pickle=False" in call, f"{name}: {call}"


WRITE_PATTERNS = (
    r"\bopen\([^)]*['\"][wax]b?\+?['\"]",  # open(..., "w"/"wb"/"a"/"x")
    r"\.open\(\s*['\"][wax]",
    r"\.write_bytes\(",
    r"\.write_text\(",
    r"\bnp\.save[z]?\(",
    r"\.tofile\(",
    r"\bjson\.dump\(",
    r"\bshutil\.copy",
)
# (module, line fragment) allowed to write: the atomic writer itself, and the golden writer filling the
# temporary directory of files.atomic_directory
ALLOWED = {("cases.py", "(tmp / name).write_bytes(data)")}


def test_every_write_goes_through_files_py() -> None:
    offenders = []
    for path in sources():
        if path.name == "files.py":
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if any(re.search(p, code) for p in WRITE_PATTERNS) and (path.name, line.strip()) not in ALLOWED:
                offenders.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_write_patterns_catch_a_raw_write() -> None:
    """The check above can fail: each pattern matches the kind of line it is meant to forbid."""
    samples = ["with open(p, 'wb') as f:", "p.open('w')", "p.write_bytes(b)", "p.write_text(t)", "np.save(p, a)",
               "a.tofile(p)", "json.dump(o, f)", "shutil.copyfile(a, b)"]
    for sample, pattern in zip(samples, WRITE_PATTERNS, strict=True):
        assert re.search(pattern, sample), (pattern, sample)
    assert not any(re.search(p, "with open(path, 'rb') as fh:") for p in WRITE_PATTERNS)


# ------------------------------------------------------------------------------------------ staged run output

NETWORK = {"name": "net", "data": {"weight": "random"},
           "layers": [{"name": "up1", "input_shape": [1, 2, 3, 3], "in_channels": 2, "out_channels": 2,
                       "kernel_size": 2, "stride": 2},
                      {"name": "up2", "in_channels": 2, "out_channels": 1, "kernel_size": 2, "stride": 2}]}


def _write_yaml(path: Path, raw: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(raw))
    return path


def test_network_failing_in_its_last_layer_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first layer succeeds and the second fails: no layer's output may reach the run directory."""
    from simulator import runner
    from simulator.cli import main
    from simulator.errors import ConvsimError

    real = runner.simulate_layer

    def fail_second(layer, *args, **kwargs):  # type: ignore[no-untyped-def]
        if layer.name == "up2":
            raise ConvsimError("layer up2: injected failure")
        return real(layer, *args, **kwargs)

    monkeypatch.setattr(runner, "simulate_layer", fail_second)
    config = _write_yaml(tmp_path / "net.yaml", NETWORK)
    out = tmp_path / "runs" / "net"
    assert main(["run", str(config), "--out", str(out), "--golden-dir", str(tmp_path / "golden")]) == 2
    assert not (tmp_path / "runs").exists()  # not even the parent created for it


def test_run_into_an_existing_directory_keeps_unrelated_files(tmp_path: Path) -> None:
    from simulator.cli import main

    config = _write_yaml(tmp_path / "integ.yaml", RAW)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "ofmap.npy").write_bytes(b"stale")
    (out / "dumps").mkdir()
    (out / "dumps" / "old.bin").write_bytes(b"old")
    assert main(["run", str(config), "--out", str(out), "--no-compare"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert np.load(out / "ofmap.npy", allow_pickle=False).shape == (1, 2, 7, 7)  # (3 - 1) * 2 + 3
    assert not (out / "dumps" / "old.bin").exists() and (out / "dumps" / "index.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporaries left
