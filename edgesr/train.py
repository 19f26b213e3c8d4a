"""Training loop: recipe per model, progress, atomic resumable checkpoints, NaN guard."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgesr.checkpoints import write_checkpoint
from edgesr.data import PairSet, random_batch
from edgesr.errors import ToolError, UserError
from edgesr.families.classsr.model import STAGES as CLASSSR_STAGES
from edgesr.registry import SRConfig


@dataclass(frozen=True)
class Recipe:
    """Optimiser settings from the method's paper (METHODS.md); batch/patch are overridable."""

    lr: float
    batch: int
    hr_patch: dict[int, int]  # HR patch side per scale, as the papers state it
    milestones: tuple[float, ...] = (0.5, 0.75, 0.9)  # fractions of --iters where lr halves
    stages: tuple[str, ...] = ()  # a staged recipe's stages, in order (ClassSR); () = one stage
    stage_lr: tuple[tuple[str, float], ...] = ()  # per-stage learning rates

    def lr_patch(self, scale: int) -> int:
        return self.hr_patch[scale] // scale

    def lr_for(self, stage: str | None) -> float:
        return dict(self.stage_lr).get(stage, self.lr)


RECIPES = {
    "ecbsr": Recipe(lr=5e-4, batch=32, hr_patch={2: 128, 3: 192, 4: 256}),
    "splitsr": Recipe(lr=1e-4, batch=16, hr_patch={2: 96, 3: 96, 4: 96}),
    # SMSR: LR patch 96; lr halved every 200 of the paper's 1000 epochs. The model's
    # training_loss adds the sparsity term and anneals tau (edgesr/models/smsr.py).
    "smsr": Recipe(lr=2e-4, batch=16, hr_patch={2: 192, 3: 288, 4: 384}, milestones=(0.2, 0.4, 0.6, 0.8)),
    # ClassSR: 32x32 LR sub-images (the classifier's tile); the authors' batch is 96. Stages
    # (edgesr/models/classsr.py, set_stage): branches and classifier at 1e-3, joint fine-tune at 1e-4.
    "classsr": Recipe(lr=1e-3, batch=16, hr_patch={2: 64, 3: 96, 4: 128}, stages=CLASSSR_STAGES,
                      stage_lr=(("joint", 1e-4),)),
}


def recipe_for(model: str) -> Recipe:
    if model not in RECIPES:
        raise UserError(f"no training recipe for {model} yet: edgesr can train {', '.join(RECIPES)}")
    return RECIPES[model]


@dataclass(frozen=True)
class TrainSettings:
    """What one training run does."""

    iters: int
    batch: int
    lr_patch: int
    lr: float
    seed: int = 0
    save_every: int = 500
    log_every: int = 50


def _save(path: Path, model: torch.nn.Module, name: str, config: SRConfig, iteration: int, optimizer, scheduler,
          rng, final: bool) -> None:
    metadata = {"model": name, "config": config.to_dict(), "graph": "train", "iterations": iteration}
    if getattr(model, "stage", None):  # ClassSR: which stage of its recipe produced these weights
        metadata["stage"] = model.stage
    payload = {"edgesr": metadata,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    if not final:
        payload["train_state"] = {"iteration": iteration, "optimizer": optimizer.state_dict(),
                                  "scheduler": scheduler.state_dict(), "numpy_rng": rng.bit_generator.state,
                                  "torch_rng": torch.get_rng_state()}
    write_checkpoint(path, payload, force=True)


def train(model: torch.nn.Module, name: str, config: SRConfig, pairs: PairSet, settings: TrainSettings,
          output: Path, resume_state: dict | None = None,
          log=lambda s: print(s, file=sys.stderr, flush=True)) -> int:
    """Train the training graph `model` of model family `name` in place with L1 loss, saving
    checkpoints to `output`; returns the number of iterations done."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).train()
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
    milestones = sorted({max(1, int(f * settings.iters)) for f in recipe_for(name).milestones})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.5)
    start = 0
    if resume_state:
        start = resume_state["iteration"]
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        rng.bit_generator.state = resume_state["numpy_rng"]
        torch.set_rng_state(resume_state["torch_rng"])
        log(f"resuming at iteration {start} of {settings.iters}")
    pixel_range = config.pixel_range
    last_saved = start  # the iteration `output` holds for this run (0: nothing of this run yet)
    tick, running, seen = time.perf_counter(), 0.0, 0
    for iteration in range(start + 1, settings.iters + 1):
        lr_np, hr_np = random_batch(pairs, settings.batch, settings.lr_patch, config.scale, rng)
        lr_t = torch.from_numpy(lr_np * pixel_range).to(device)
        hr_t = torch.from_numpy(hr_np * pixel_range).to(device)
        model_loss = getattr(model, "training_loss", None)  # a model's own objective (SMSR: + sparsity)
        loss = (model_loss(lr_t, hr_t, (iteration - 1) / settings.iters) if model_loss
                else F.l1_loss(model(lr_t), hr_t))
        if not math.isfinite(loss.item()):
            saved = (f"the last good checkpoint is {output}, iteration {last_saved} (resume it with --resume and a "
                     "lower --lr)" if last_saved else "this run saved no checkpoint yet")
            raise ToolError(f"training loss became {loss.item()} at iteration {iteration}: lower --lr; {saved}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        running, seen = running + loss.item() / pixel_range, seen + 1
        if iteration % settings.log_every == 0 or iteration == settings.iters:
            rate = seen / (time.perf_counter() - tick)
            eta = (settings.iters - iteration) / rate
            log(f"iter {iteration:>6}/{settings.iters}  loss {running / seen:.5f}  "
                f"lr {scheduler.get_last_lr()[0]:.2e}  {rate:.1f} it/s  eta {eta / 60:.1f} min")
            tick, running, seen = time.perf_counter(), 0.0, 0
        if iteration % settings.save_every == 0 and iteration < settings.iters:
            _save(output, model, name, config, iteration, optimizer, scheduler, rng, final=False)
            last_saved = iteration
    model.eval().cpu()
    _save(output, model, name, config, settings.iters, optimizer, scheduler, rng, final=True)
    return settings.iters
