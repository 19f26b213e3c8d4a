"""`edgesr train` under the real torchrun launcher: 2 CPU processes (gloo) against one process.

The bound. DDP computes the same per-sample gradients as one process and sums them in another
order (two partial means, then their mean): float32 rounding, ~1e-7 of each gradient, which
Adam's normalised steps keep at that order except where an element is near 0. So the two runs'
weights may differ by a small fraction of the distance the weights travelled: BOUND = 1e-3 of
|w_run - w_init| (measured: 3e-5). A rank that trained on the wrong share of each batch (both
ranks on the first half, which is a one-process run at half the batch) lands 0.15 of the
distance away, so the test fails when the sharding is wrong."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import edgesr
from edgesr.cli import main
from edgesr.data import load_pairs, random_batch
from edgesr.distributed import Ranks, check_batch
from edgesr.errors import UserError
from edgesr.family import get_family

BOUND = 1e-3
TINY = ["--model", "ecbsr", "--variant", "M1C4", "--scale", "2"]
PACKAGE = str(Path(edgesr.__file__).parent)


def torchrun(*args: str, ranks: int = 2, wait: bool = True, timeout: float = 180):
    """`torchrun --standalone --nproc-per-node N -m edgesr ARGS` (a free port per job)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               "-m", "edgesr", *args]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def weights(path: Path) -> torch.Tensor:
    state = torch.load(path, weights_only=True)["state_dict"]
    return torch.cat([v.flatten().double() for v in state.values() if v.is_floating_point()])


def initial_weights(seed: int) -> torch.Tensor:
    """The training graph `edgesr train --seed seed` starts from."""
    family = get_family("ecbsr")
    torch.manual_seed(seed)
    graph = family.training_graph(family.config("M1C4", 2, None))
    return torch.cat([v.flatten().double() for v in graph.state_dict().values() if v.is_floating_point()])


def distance(a: Path, b: Path, init: torch.Tensor) -> float:
    """|w_a - w_b| over the distance w_a travelled from the initial weights."""
    wa = weights(a)
    return float((wa - weights(b)).norm() / (wa - init).norm())


def final_loss(log: str) -> float:
    """The loss of the last progress line ('... 12/12 loss 0.02080 ...')."""
    return float(log.rsplit(" loss ", 1)[1].split()[0])


def edgesr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("edgesr:")]


def test_a_global_batch_splits_into_the_ranks_shares(hr_folder):
    pairs = load_pairs(hr_folder, 2, 1, min_lr_side=8)
    whole_lr, whole_hr = random_batch(pairs, 6, 8, 2, np.random.default_rng(5))
    parts = [random_batch(pairs, 6, 8, 2, np.random.default_rng(5), Ranks(r, 3).shard(6)) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole_lr)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole_hr)
    check_batch(6, Ranks(0, 3))
    with pytest.raises(UserError, match="batch 7 does not split over 2 ranks"):
        check_batch(7, Ranks(1, 2))


@pytest.mark.slow
def test_two_ranks_train_what_one_process_trains(hr_folder, tmp_path, capsys):
    def argv(batch: int, name: str) -> list[str]:
        return ["train", *TINY, "--data", str(hr_folder), "--iters", "12", "--batch", str(batch), "--patch", "12",
                "--seed", "3", "--ema", "0", "-o", str(tmp_path / name)]

    assert main(argv(4, "one.pt")) == 0
    one_loss = final_loss(capsys.readouterr().err)
    assert main(argv(2, "half.pt")) == 0  # what each rank would train on the first half of every batch
    run = torchrun(*argv(4, "two.pt"), "--val", str(hr_folder), "--json", str(tmp_path / "two.json"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert abs(final_loss(run.stderr) - one_loss) <= BOUND * one_loss  # the global batch's loss, as logged
    assert run.stderr.count("training ecbsr M1C4 x2") == 1 and "batch 4 on 2 ranks (2 each)" in run.stderr
    assert run.stdout.count(f"saved {tmp_path / 'two.pt'}") == 1  # rank 0 alone reports
    init = initial_weights(3)
    assert distance(tmp_path / "one.pt", tmp_path / "two.pt", init) < BOUND
    assert distance(tmp_path / "one.pt", tmp_path / "half.pt", init) > 10 * BOUND
    saved = torch.load(tmp_path / "two.pt", weights_only=True)
    assert not [k for k in saved["state_dict"] if k.startswith("module.")] and "train_state" not in saved
    capsys.readouterr()
    assert main(["eval", "--model", "ecbsr", "--weights", str(tmp_path / "two.pt"), "--data", str(hr_folder),
                 "--json", str(tmp_path / "eval.json")]) == 0  # loads in one process; --val scored the same
    assert json.loads((tmp_path / "two.json").read_text())["eval"]["images"] == \
        json.loads((tmp_path / "eval.json").read_text())["images"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["branches", "classifier"])
def test_classsr_stages_rank_and_balance_the_global_batch(hr_folder, tmp_path, stage):
    """Branch pre-training ranks the global batch into thirds, the classifier's average loss sums
    the global batch: with per-rank batches both would differ from one process."""
    argv = ["train", "--model", "classsr", "--variant", "FSRCNN-16-36-56-skip", "--scale", "2", "--data",
            str(hr_folder), "--iters", "4", "--batch", "6", "--patch", "8", "--ema", "0", "--stage", stage]
    if stage == "classifier":
        assert main([*argv[:-2], "--stage", "branches", "--iters", "2", "-o", str(tmp_path / "b.pt")]) == 0
        argv += ["--weights", str(tmp_path / "b.pt")]
    assert main(argv + ["-o", str(tmp_path / "one.pt")]) == 0
    run = torchrun(*argv, "-o", str(tmp_path / "two.pt"))
    assert run.returncode == 0, run.stderr[-2000:]
    start = weights(tmp_path / "b.pt") if stage == "classifier" else None
    if start is None:
        family = get_family("classsr")
        torch.manual_seed(0)
        graph = family.training_graph(family.config("FSRCNN-16-36-56-skip", 2, None))
        start = torch.cat([v.flatten().double() for v in graph.state_dict().values() if v.is_floating_point()])
    assert distance(tmp_path / "one.pt", tmp_path / "two.pt", start) < BOUND


@pytest.mark.slow
def test_resume_across_world_sizes(hr_folder, tmp_path, interrupt_training):
    """One process stopped at iteration 4 resumes on 2 ranks; 2 ranks stopped by SIGTERM resume in
    one process: both end where one uninterrupted process ends."""
    argv = ["train", *TINY, "--data", str(hr_folder), "--iters", "120", "--batch", "4", "--patch", "12",
            "--seed", "3", "--ema", "0.9", "--save-every", "4"]
    assert main(argv + ["-o", str(tmp_path / "whole.pt")]) == 0
    interrupt_training(7)
    assert main(argv + ["-o", str(tmp_path / "one_then_two.pt")]) == 130
    run = torchrun(*argv, "-o", str(tmp_path / "one_then_two.pt"), "--resume")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr.count("resuming at iteration 4 of 120") == 1

    job = torchrun(*argv, "-o", str(tmp_path / "two_then_one.pt"), wait=False)
    checkpoint = tmp_path / "two_then_one.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.02)
    os.killpg(job.pid, signal.SIGTERM)  # as Ctrl-C / a scheduler would: torchrun passes it to every rank
    _, err = job.communicate(timeout=60)
    assert job.returncode != 0 and f'File "{PACKAGE}' not in err
    stopped = torch.load(checkpoint, weights_only=True)["train_state"]["iteration"]
    assert 4 <= stopped < 120
    assert main(argv + ["-o", str(checkpoint), "--resume"]) == 0
    init = initial_weights(3)
    for resumed in ("one_then_two.pt", "two_then_one.pt"):
        assert distance(tmp_path / "whole.pt", tmp_path / resumed, init) < BOUND, resumed


def _rank_pid(job: subprocess.Popen, rank: int) -> int | None:
    """The pid of `rank` among the launcher's descendants (its environment says RANK=rank)."""
    parents = {}
    for proc in Path("/proc").iterdir():
        try:
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor and ancestor != job.pid:
            ancestor = parents.get(ancestor)
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if ancestor == job.pid else []
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return pid
    return None


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_with_one_line(hr_folder, tmp_path):
    checkpoint = tmp_path / "run.pt"
    job = torchrun("train", *TINY, "--data", str(hr_folder), "--iters", "100000", "--batch", "4", "--patch", "12",
                   "--save-every", "10", "-o", str(checkpoint), wait=False)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.05)
    pid = _rank_pid(job, 1)
    assert pid is not None and job.poll() is None
    os.kill(pid, signal.SIGKILL)
    _, err = job.communicate(timeout=90)  # no hung rank: the job ends
    assert job.returncode != 0
    lines = edgesr_lines(err)
    assert len(lines) == 1, err[-3000:]
    assert "rank 0 of 2: another rank stopped" in lines[0] or "stopped by SIGTERM" in lines[0]
    assert f'File "{PACKAGE}' not in err  # no traceback from edgesr (torchrun prints its own summary)
    assert 10 <= torch.load(checkpoint, weights_only=True)["train_state"]["iteration"] < 100000


@pytest.mark.slow
def test_a_user_error_is_said_once_and_named_in_torchruns_summary(hr_folder, tmp_path):
    run = torchrun("train", *TINY, "--data", str(hr_folder), "--iters", "2", "--batch", "3", "-o",
                   str(tmp_path / "x.pt"))
    assert run.returncode != 0
    lines = edgesr_lines(run.stderr)
    assert lines == ["edgesr: error: batch 3 does not split over 2 ranks: --batch is the global batch, pass a "
                     "multiple of 2, e.g. 2"]
    assert "traceback : edgesr: error: batch 3 does not split" in run.stderr  # the launcher's summary
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_a_nan_loss_stops_every_rank_with_one_message(hr_folder, tmp_path):
    """The loss is averaged over the ranks before it is checked, so all ranks stop at the same
    iteration (none is left waiting in a collective); lr 1e36 overflows the weights at once."""
    run = torchrun("train", *TINY, "--data", str(hr_folder), "--iters", "50", "--batch", "4", "--patch", "12",
                   "--lr", "1e36", "--save-every", "10", "-o", str(tmp_path / "nan.pt"), timeout=120)
    assert run.returncode != 0
    assert edgesr_lines(run.stderr) == ["edgesr: error: training loss became nan at iteration 2: lower --lr; this run "
                                       "saved no checkpoint yet"]
    assert run.stderr.count("traceback : edgesr: error: training loss became nan at iteration 2") == 2  # both ranks
    assert not (tmp_path / "nan.pt").exists()
