"""ExecuTorch .pte export (XNNPACK): parity with the training graph at two input sizes and in
both directions (a weight 1.5 quanta of the bound off fails, a quarter passes), the declared
side bounds, the metadata slot, threads, every family, eval/upscale and a missing extra."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from test_error_model import moved_weight

from edgesr import metadata
from edgesr.cli import main
from edgesr.deployable import TILE_BATCH
from edgesr.errors import UserError
from edgesr.export.exporter import export, parity
from edgesr.export.pte import MAX_SIDE, MIN_SIDE, export_pte
from edgesr.images import verification_inputs
from edgesr.model import prepare
from edgesr.runners import open_runtime_file


@pytest.fixture(scope="module")
def shipped_pte(tmp_path_factory):
    """The shipped ECBSR-M4C16 x4 exported once: (prepared, report, path)."""
    prepared = prepare("ecbsr")
    path = tmp_path_factory.mktemp("pte") / "ecbsr.pte"
    return prepared, export(prepared, "pte", "fp32", path), path


def test_pte_matches_the_training_graph_at_two_sizes_and_describes_itself(shipped_pte):
    prepared, report, path = shipped_pte
    assert report.parity.passed and report.parity.candidate == "pte-fp32"
    for size in ((33, 47), (96, 128)):  # odd and even, neither used at export
        check = parity(prepared, path, "fp32", sizes=[size])
        assert check.passed, (size, check)
    meta = metadata.read(path)
    assert (meta["family"], meta["io"]["scale"], meta["precision"]) == ("ecbsr", 4, "fp32")
    assert (meta["min_side"], meta["max_side"]) == (MIN_SIDE, MAX_SIDE) and meta["parity"][0]["result"] == "PASS"
    delegation = report.files[0].delegation
    assert delegation.partitions >= 1 and not delegation.outside  # every conv, PReLU, add in XNNPACK
    assert "XNNPACK" in report.format() and "pte fp32" in report.format()


def test_a_weight_off_by_one_quantum_fails_pte_parity(tmp_path):
    """The .pte of a deploy graph with one weight moved by 1.5 quanta of the bound fails the
    check against the training graph; moved by a quarter of one it passes."""
    prepared = prepare("ecbsr")
    _, x = verification_inputs([(24, 24), (17, 29)], 1, 255.0, seed=5)[1]
    for steps, passes in ((0.25, True), (1.5, False)):
        path = tmp_path / f"moved-{steps}.pte"
        with moved_weight(prepared, x, steps):
            export_pte(prepared.deploy, path, 1)
        assert parity(prepared, path, "fp32", sizes=[(17, 29)]).passed == passes, steps  # vs the true graphs


THREADS_IN_A_FRESH_PROCESS = """
import sys
from edgesr.errors import ToolError
from edgesr.runners import open_runtime_file
graph = open_runtime_file(sys.argv[1], threads=int(sys.argv[2]))
again = open_runtime_file(sys.argv[1], threads=int(sys.argv[2])).threads
try:
    open_runtime_file(sys.argv[1], threads=int(sys.argv[2]) + 1)
    print(graph.threads, again, "resized under a loaded program")
except ToolError as exc:
    print(graph.threads, again, exc)
"""


@pytest.mark.parametrize("threads", [1, 3])
def test_threads_are_applied_before_load_and_never_changed_under_a_loaded_program(shipped_pte, threads):
    _, _, path = shipped_pte
    run = subprocess.run([sys.executable, "-c", THREADS_IN_A_FRESH_PROCESS, str(path), str(threads)],
                         capture_output=True, text=True, timeout=300)
    applied, again, message = run.stdout.strip().splitlines()[-1].split(" ", 2)
    assert (int(applied), int(again)) == (threads, threads), run.stderr[-2000:]  # the pool's own reported size
    assert "threadpool is shared by the whole process" in message and f"at {threads + 1} thread(s)" in message


def test_sides_outside_the_declared_bounds_are_refused(shipped_pte):
    _, _, path = shipped_pte
    graph = open_runtime_file(path)
    for shape in ((1, 1, 16, MAX_SIDE + 1), (1, 1, MIN_SIDE - 1, 40)):
        with pytest.raises(UserError, match=f"takes sides of {MIN_SIDE} to {MAX_SIDE} pixels"):
            graph(np.zeros(shape, np.float32))
    assert graph(np.zeros((1, 1, 16, 20), np.float32)).shape == (1, 1, 64, 80)


def test_metadata_is_rewritten_in_place_and_the_program_still_runs(shipped_pte, tmp_path, capsys):
    _, _, path = shipped_pte
    copy = tmp_path / "copy.pte"
    copy.write_bytes(path.read_bytes())
    x = np.random.default_rng(0).uniform(0, 255, (1, 1, 20, 24)).astype(np.float32)
    before = open_runtime_file(copy)(x)
    meta = metadata.read(copy)
    metadata.embed(copy, {**meta, "note": "rewritten"})
    assert copy.stat().st_size == path.stat().st_size and metadata.read(copy)["note"] == "rewritten"
    np.testing.assert_array_equal(open_runtime_file(copy)(x), before)
    capsys.readouterr()
    assert main(["inspect", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "ecbsr M4C16 x4" in out and "train vs pte-fp32" in out and "XNNPACK x" in out


def test_eval_and_upscale_take_a_pte(shipped_pte, hr_folder, tmp_path, capsys):
    _, _, path = shipped_pte
    assert main(["eval", "--model-file", str(path), "--data", str(hr_folder), "--json", str(tmp_path / "e.json")]) == 0
    assert main(["eval", "--model", "ecbsr", "--data", str(hr_folder), "--json", str(tmp_path / "t.json")]) == 0
    import json

    on_pte, on_torch = (json.loads((tmp_path / f"{n}.json").read_text())["images"] for n in "et")
    for a, b in zip(on_pte, on_torch):
        assert abs(a["psnr_y"] - b["psnr_y"]) < 0.01, (a, b)
    image = next(hr_folder.iterdir())
    assert main(["upscale", str(image), "-o", str(tmp_path / "up.png"), "--model-file", str(path)]) == 0
    assert (tmp_path / "up.png").is_file()


@pytest.fixture(scope="module")
def shipped_int8_pte(tmp_path_factory):
    prepared = prepare("ecbsr")
    path = tmp_path_factory.mktemp("pte8") / "ecbsr8.pte"
    return prepared, export(prepared, "pte", "int8", path), path


def test_int8_pte_is_all_in_xnnpack_within_its_model_and_as_good_as_fp32(shipped_int8_pte, shipped_pte, hr_folder,
                                                                         tmp_path):
    """PT2E int8 with the XNNPACK quantizer: the ranges the file records drive the error model
    (both directions: tests/test_error_model.py); its PSNR on photos is within 0.1 dB of fp32's."""
    prepared, report, path = shipped_int8_pte
    assert report.parity.passed and report.parity.candidate == "pte-int8"
    for size in ((33, 47), (96, 128)):
        assert parity(prepared, path, "int8", sizes=[size]).passed, size
    assert report.files[0].delegation.partitions >= 1 and not report.files[0].delegation.outside
    recorded = metadata.read(path)["int8_ranges"]
    assert recorded["input"] == [0.0, 255.0] and sum(r is not None for r in recorded["ops"]) >= 10  # 6 convs, 5 PReLU
    import json

    scores = []
    for name, model in (("int8", path), ("fp32", shipped_pte[2])):
        assert main(["eval", "--model-file", str(model), "--data", str(hr_folder), "--json",
                     str(tmp_path / f"{name}.json")]) == 0
        scores.append(json.loads((tmp_path / f"{name}.json").read_text())["mean"]["psnr_y"])
    assert abs(scores[0] - scores[1]) < 0.1, scores


def test_an_int8_pte_without_recorded_ranges_is_refused(shipped_int8_pte, tmp_path):
    prepared, _, path = shipped_int8_pte
    copy = tmp_path / "bare.pte"
    copy.write_bytes(path.read_bytes())
    metadata.embed(copy, {k: v for k, v in metadata.read(copy).items() if k != "int8_ranges"})
    with pytest.raises(UserError, match="records no int8 ranges: export it again"):
        parity(prepared, copy, "int8")


@pytest.mark.slow
@pytest.mark.parametrize("name,variant", [("smsr", "C16-K2"), ("splitsr", "A0.25-G8B2-H1-C16-BIC"),
                                          ("classsr", "FSRCNN-16-36-56-skip")])
def test_every_family_exports_a_verified_pte(name, variant, tmp_path):
    """SMSR pads odd sides itself (the .pte takes even ones, its runner pads: odd parity sizes
    are checked); ClassSR is a bundle of four .pte files with its manifest."""
    prepared = prepare(name, variant)
    out = tmp_path / (f"{name}.pte" if prepared.deployable.single else name)
    report = export(prepared, "pte", "fp32", out)
    assert all(c.passed for c in report.checks) and report.parity.candidate == "pte-fp32"
    assert parity(prepared, out, "fp32", sizes=[(21, 35)]).passed


def test_a_missing_executorch_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "executorch", None)
    assert main(["export", "--model", "ecbsr", "--format", "pte", "-o", str(tmp_path / "m.pte")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("edgesr: error: executorch is not installed (the 'executorch' extra: ExecuTorch .pte export "
                       "and runtime): pip install 'edgesr[executorch]'")
    assert not (tmp_path / "m.pte").exists()


def test_tile_graphs_take_their_declared_batch_and_the_bundle_routes_more_tiles(tmp_path):
    """Each tile graph of a ClassSR bundle takes 1..TILE_BATCH tiles. Lowering used to narrow the
    bound to 15 (a conv guard taken on the 2-tile tracing example), so any photo with 16 tiles of one
    class failed; now a photo of 100 tiles routes in batches and matches the training graph, and a
    batch over the bound is one clear line."""
    prepared = prepare("classsr", "FSRCNN-4-6-8-S4M1")
    out = tmp_path / "bundle"
    export(prepared, "pte", "fp32", out)
    assert parity(prepared, out, "fp32", sizes=[(284, 284)]).passed  # 10 x 10 tiles of 32, stride 28
    for name in ("classifier", "net1"):
        graph = open_runtime_file(out / f"{name}.pte")
        tiles = np.random.default_rng(0).uniform(0, 255, (TILE_BATCH + 1, 3, 32, 32)).astype(np.float32)
        with torch.no_grad():
            shape = prepared.deployable.graphs[name].module(torch.from_numpy(tiles[:TILE_BATCH])).shape
        assert graph(tiles[:TILE_BATCH]).shape == tuple(shape)
        with pytest.raises(UserError, match=f"takes batches of 1 to {TILE_BATCH} tiles .* not {TILE_BATCH + 1}"):
            graph(tiles)
