"""Training loop: recipe per model, progress, atomic resumable checkpoints, NaN guard."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgesr.checkpoints import write_checkpoint
from edgesr.data import PairSet, random_batch
from edgesr.distributed import Ranks, check_batch, current, device_for, mean_over_ranks, peer_lost, process_group
from edgesr.errors import ToolError, UserError
from edgesr.family import Config, Family, Recipe


def recipe_for(family: Family) -> Recipe:
    if family.recipe is None:
        raise UserError(f"{family.name} has no training recipe: edgesr exports and verifies it, but cannot train it")
    return family.recipe


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
    schedule: str = "steps"  # "steps": the recipe's milestones halve the lr; "cosine": lr * (1 + cos(pi t)) / 2
    ema: float = 0.0  # decay of the exponential moving average of the weights that is saved (0: none)
    loss: str = "l1"  # reconstruction loss of a family without its own objective: "l1" or "mse"
    regularization: float | None = None  # weight of the objective's regularization term (None: it has none)


SCHEDULES = ("steps", "cosine")
LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}  # mse: what PSNR measures (e.g. a short fine-tune after L1)


def lr_scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings, milestones: tuple[float, ...]):
    """The learning-rate schedule: the recipe's step milestones (lr halves at each fraction of the run)
    or cosine annealing from lr to lr/100 over the run."""
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.iters, eta_min=settings.lr / 100)
    steps = sorted({max(1, int(f * settings.iters)) for f in milestones})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, steps, gamma=0.5)


def weight_average(model: torch.nn.Module, decay: float):
    """Exponential moving average of the weights and buffers: avg <- decay avg + (1 - decay) w per step
    (torch.optim.swa_utils); None when decay is 0."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu() for k, v in state.items()}


def _save(path: Path, model: torch.nn.Module, average, name: str, config: Config, iteration: int, optimizer,
          scheduler, settings: TrainSettings, rng, final: bool) -> None:
    """The checkpoint holds the weights to use (the average when there is one); an unfinished run
    also holds what `resume` needs, the raw weights included."""
    metadata = {"model": name, "config": config.to_dict(), "graph": "train", "iterations": iteration}
    if getattr(model, "stage", None):  # ClassSR: which stage of its recipe produced these weights
        metadata["stage"] = model.stage
    if average is not None:
        metadata["ema"] = True
    if settings.regularization is not None:
        metadata["regularization"] = settings.regularization
    shipped = model if average is None else average.module
    payload = {"edgesr": metadata, "state_dict": _cpu(shipped.state_dict())}
    if not final:
        payload["train_state"] = {"iteration": iteration, "schedule": settings.schedule, "loss": settings.loss,
                                  "regularization": settings.regularization,
                                  "optimizer": optimizer.state_dict(),
                                  "scheduler": scheduler.state_dict(), "numpy_rng": rng.bit_generator.state,
                                  "torch_rng": torch.get_rng_state()}
        if average is not None:
            payload["train_state"]["raw_weights"] = _cpu(model.state_dict())
            payload["train_state"]["ema_state"] = _cpu(average.state_dict())
    write_checkpoint(path, payload, force=True)


class Objective(torch.nn.Module):
    """The recipe's loss as one module, so that DistributedDataParallel can wrap it: the model's
    own `training_loss(lr, hr, progress)` (SMSR: + sparsity, ClassSR: its stage's loss) or `loss`
    (LOSSES: L1, the papers', or MSE).
    With `every_parameter`, 0 * sum(w) over the trainable weights joins the loss: gradients are
    unchanged (each gains an exact 0), and every weight is in every rank's graph, as DDP needs,
    even when a rank's share leaves one unused (a ClassSR branch that got no sample)."""

    def __init__(self, model: torch.nn.Module, every_parameter: bool = False, loss: str = "l1"):
        super().__init__()
        self.model = model
        self.every_parameter = every_parameter
        self.loss = LOSSES[loss]

    def forward(self, lr: torch.Tensor, hr: torch.Tensor, progress: float) -> torch.Tensor:
        own = getattr(self.model, "training_loss", None)
        loss = own(lr, hr, progress) if own else self.loss(self.model(lr), hr)
        if self.every_parameter:
            loss = loss + 0.0 * sum(p.sum() for p in self.model.parameters() if p.requires_grad)
        return loss


def check_loss(family: Family, model: torch.nn.Module, loss: str) -> None:
    """Only a family trained with plain L1 takes another reconstruction loss."""
    if loss != "l1" and getattr(model, "training_loss", None):
        raise UserError(f"{family.name} trains with its own objective: drop «loss» ({loss})")


def _parallel(model: torch.nn.Module, ranks: Ranks, device: torch.device, loss: str) -> torch.nn.Module:
    """The objective under DDP over the ranks (rank 0's weights broadcast at construction; the
    backward all-reduces the mean gradient); the objective itself in one process."""
    if ranks.world == 1:
        return Objective(model, loss=loss)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(Objective(model, every_parameter=True, loss=loss),
                                   device_ids=[device.index] if device.type == "cuda" else None)


def _seed_other_ranks(seed: int, start: int, ranks: Ranks) -> None:
    """Ranks other than 0 draw their own random numbers (SMSR's Gumbel noise) from a seed of
    (seed, start iteration, rank); rank 0 keeps the single-process stream."""
    if not ranks.main:
        torch.manual_seed(int(np.random.SeedSequence([seed, start, ranks.rank]).generate_state(1)[0]))


def _global_loss(loss: torch.Tensor, ranks: Ranks) -> float:
    """The global batch's loss (mean over the ranks' equal shares), the same number on every rank;
    a collective that fails because another rank died becomes PeerLost."""
    try:
        return mean_over_ranks(loss).item()
    except RuntimeError as exc:
        raise peer_lost(exc, ranks) from None


def train(model: torch.nn.Module, family: Family, config: Config, pairs: PairSet, settings: TrainSettings,
          output: Path, resume_state: dict | None = None,
          log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
          bar: Callable[[int, int, str], None] | None = None) -> int:
    """Train the training graph `model` of `family` in place with its recipe's objective, saving
    checkpoints to `output`; returns the number of iterations done. Progress every log_every
    iterations goes to `bar(iteration, total, text)` if given, else to `log`. Under torchrun
    (a process group, see edgesr.distributed) each rank computes its share of every batch and
    rank 0 alone saves and reports."""
    ranks = current()
    check_batch(settings.batch, ranks)
    device = device_for(ranks)
    model.to(device).train()
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
    name = family.name
    scheduler = lr_scheduler(optimizer, settings, recipe_for(family).milestones)
    start = 0
    if resume_state:
        start = resume_state["iteration"]
        if bool(settings.ema) != ("ema_state" in resume_state):
            started = "with" if "ema_state" in resume_state else "without"
            raise UserError(f"the run to resume was started {started} a weight average: resume it {started} «ema»")
        if settings.ema:
            model.load_state_dict(resume_state["raw_weights"])
        started = resume_state.get("schedule", "steps")  # runs saved before the choice existed used steps
        if started != settings.schedule:
            raise UserError(f"the run to resume used the {started} learning-rate schedule: resume it with «schedule» "
                            f"{started}")
        if resume_state.get("loss", "l1") != settings.loss:
            raise UserError(f"the run to resume used the {resume_state.get('loss', 'l1')} loss: resume it with «loss» "
                            f"{resume_state.get('loss', 'l1')}")
        # runs saved before the option existed used the recipe's weight
        started = resume_state.get("regularization", recipe_for(family).regularization)
        if started != settings.regularization:
            raise UserError(f"the run to resume used regularization weight {started:g}: resume it with "
                            f"«regularization» {started:g}")
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        rng.bit_generator.state = resume_state["numpy_rng"]
        torch.set_rng_state(resume_state["torch_rng"])
        if ranks.main:
            log(f"resuming at iteration {start} of {settings.iters}")
    average = weight_average(model, settings.ema)
    if average is not None and resume_state:
        average.load_state_dict(resume_state["ema_state"])
    _seed_other_ranks(settings.seed, start, ranks)
    check_loss(family, model, settings.loss)
    if settings.regularization is not None:
        model.regularization = settings.regularization
    step = _parallel(family.training_step_graph(model), ranks, device, settings.loss)
    pixel_range = config.pixel_range
    share = ranks.shard(settings.batch)
    last_saved = start  # the iteration `output` holds for this run (0: nothing of this run yet)
    tick, running, seen = time.perf_counter(), 0.0, 0
    for iteration in range(start + 1, settings.iters + 1):
        lr_np, hr_np = random_batch(pairs, settings.batch, settings.lr_patch, config.scale, rng, share)
        lr_t = torch.from_numpy(lr_np * pixel_range).to(device)
        hr_t = torch.from_numpy(hr_np * pixel_range).to(device)
        try:
            loss = step(lr_t, hr_t, (iteration - 1) / settings.iters)
        except RuntimeError as exc:
            if ranks.world == 1:
                raise
            raise peer_lost(exc, ranks) from None
        value = _global_loss(loss, ranks)
        if not math.isfinite(value):
            saved = (f"the last good checkpoint is {output}, iteration {last_saved} (continue it with «resume» "
                     "and a lower «lr»)" if last_saved else "this run saved no checkpoint yet")
            raise ToolError(f"training loss became {value} at iteration {iteration}: lower «lr»; {saved}")
        optimizer.zero_grad(set_to_none=True)
        try:
            loss.backward()
        except RuntimeError as exc:
            if ranks.world == 1:
                raise
            raise peer_lost(exc, ranks) from None
        optimizer.step()
        scheduler.step()
        if average is not None:
            average.update_parameters(model)
        running, seen = running + value / pixel_range, seen + 1
        if ranks.main and (iteration % settings.log_every == 0 or iteration == settings.iters):
            rate = seen / (time.perf_counter() - tick)
            eta = (settings.iters - iteration) / rate
            text = (f"loss {running / seen:.5f}  lr {scheduler.get_last_lr()[0]:.2e}  {rate:.3g} it/s  "
                    f"eta {eta / 60:.1f} min")
            if bar is not None:
                bar(iteration, settings.iters, text)
            else:
                log(f"iter {iteration:>6}/{settings.iters}  {text}")
            tick, running, seen = time.perf_counter(), 0.0, 0
        if iteration % settings.save_every == 0 and iteration < settings.iters:
            if ranks.main:
                _save(output, model, average, name, config, iteration, optimizer, scheduler, settings, rng,
                      final=False)
            last_saved = iteration
    if ranks.main:
        _save(output, model, average, name, config, settings.iters, optimizer, scheduler, settings, rng, final=True)
    if average is not None:
        model.load_state_dict(average.module.state_dict())
    model.eval().cpu()
    return settings.iters


@dataclass(frozen=True)
class TrainRequest:
    """One training run as a user asks for it (None: the family's recipe decides)."""

    model: str
    data: Path
    output: Path
    iters: int
    variant: str | None = None
    scale: int | None = None
    pixel_range: float | None = None
    batch: int | None = None
    patch: int | None = None
    lr: float | None = None
    seed: int = 0
    save_every: int = 500
    stage: str | None = None
    schedule: str | None = None
    ema: float | None = None
    loss: str = "l1"
    regularization: float | None = None  # weight of the family's regularization term (None: the recipe's)
    hr_scales: tuple[float, ...] = (1.0,)  # each photo also downscaled by these (more detail per pixel)
    weights: Path | None = None  # start a new run from these weights
    resume: bool = False  # continue the run saved in `output`
    force: bool = False  # start over although `output` exists


def _stage(family: Family, recipe: Recipe, stage: str | None) -> str | None:
    """A staged recipe (ClassSR) needs a stage; a one-stage recipe refuses one."""
    stages = recipe.stages
    if stages and stage is None:
        raise UserError(f"{family.name} trains in {len(stages)} stages: {', then '.join(stages)}: pass «stage»; "
                        "each later stage starts from the previous stage's checkpoint («weights»)")
    if stage is not None and stage not in stages:
        if not stages:
            raise UserError(f"{family.name} trains in one stage: drop «stage» ({stage})")
        raise UserError(f"unknown {family.name} training stage '{stage}': choose one of {', '.join(stages)}")
    return stage


def _regularization(family: Family, recipe: Recipe, asked: float | None) -> float | None:
    """The weight of the objective's regularization term: the request's, else the recipe's."""
    if asked is None:
        return recipe.regularization
    if recipe.regularization is None:
        raise UserError(f"{family.name}'s objective has no regularization term: drop «regularization» ({asked:g})")
    if not (math.isfinite(asked) and asked >= 0):
        raise UserError(f"regularization weight {asked:g} is not a weight: pass a finite number >= 0, e.g. "
                        f"{recipe.regularization:g} (the recipe's)")
    return asked


def settings_for(request: TrainRequest, family: Family, config: Config, stage: str | None) -> TrainSettings:
    """The recipe's settings with the request's overrides, checked."""
    recipe = recipe_for(family)
    settings = TrainSettings(request.iters, recipe.batch if request.batch is None else request.batch,
                             recipe.lr_patch(config.scale) if request.patch is None else request.patch,
                             recipe.lr_for(stage) if request.lr is None else request.lr, request.seed,
                             request.save_every, schedule=request.schedule or recipe.schedule,
                             ema=recipe.ema if request.ema is None else request.ema, loss=request.loss,
                             regularization=_regularization(family, recipe, request.regularization))
    if settings.iters < 1 or settings.batch < 1 or settings.save_every < 1 or settings.lr_patch < 4:
        raise UserError("iterations, batch and save interval must be at least 1, the LR patch at least 4")
    if settings.loss not in LOSSES:
        raise UserError(f"unknown loss '{settings.loss}': choose one of {', '.join(LOSSES)}")
    if settings.schedule not in SCHEDULES:
        raise UserError(f"unknown learning-rate schedule '{settings.schedule}': choose one of {', '.join(SCHEDULES)}")
    if not 0 <= settings.ema < 1:
        raise UserError(f"weight-average decay {settings.ema:g} is not in [0, 1): pass e.g. 0.999, or 0 for none")
    if not request.hr_scales or not all(0 < f <= 1 for f in request.hr_scales):
        raise UserError(f"HR scales {request.hr_scales} must be in (0, 1], e.g. 1 0.5")
    if not (math.isfinite(settings.lr) and settings.lr > 0):
        raise UserError(f"learning rate {settings.lr:g} is not a learning rate: pass a finite number > 0, e.g. 5e-4")
    return settings


def _check_output(request: TrainRequest) -> None:
    from edgesr.atomic import ensure_writable_parent

    output = request.output
    if request.resume and request.weights:
        raise UserError("«resume» continues the run saved in «output»; «weights» start a new run from a checkpoint: "
                        "pass one of them")
    if request.resume and request.force:
        raise UserError("«resume» continues the run in «output», «force» starts it over: pass one of them")
    if output.is_dir():
        raise UserError(f"output {output} is a directory: pass the checkpoint file to write, e.g. "
                        f"{output / 'model.pt'}")
    if request.resume and not output.exists():
        raise UserError(f"there is no run to resume: {output} does not exist (start a new run, or pass the output of "
                        "the interrupted one)")
    if output.exists() and not (request.resume or request.force):
        raise UserError(f"{output} exists: continue that run («resume») or start over («force»)")
    ensure_writable_parent(output)


def run_training(request: TrainRequest, progress: Callable[[str], None] = lambda _: None,
                 bar: Callable[[int, int, str], None] | None = None) -> tuple[Family, Config, torch.nn.Module]:
    """Check everything, load the data, train, save: (family, config, trained training graph).
    Under torchrun every rank runs this; rank 0 alone reports (`progress`, `bar`) and saves."""
    with process_group() as ranks:
        if not ranks.main:
            progress, bar = (lambda _: None), None
        return _run_training(request, ranks, progress, bar)


def _run_training(request: TrainRequest, ranks: Ranks, progress: Callable[[str], None],
                  bar: Callable[[int, int, str], None] | None) -> tuple[Family, Config, torch.nn.Module]:
    from edgesr.checkpoints import load_strict, read_checkpoint
    from edgesr.data import load_pairs
    from edgesr.family import get_family

    family = get_family(request.model)
    stage = _stage(family, recipe_for(family), request.stage)
    config = family.config(request.variant, request.scale, request.pixel_range)
    family.check_fits(config)
    settings = settings_for(request, family, config, stage)
    check_batch(settings.batch, ranks)
    _check_output(request)
    torch.manual_seed(request.seed)
    model = family.training_graph(config)
    check_loss(family, model, settings.loss)
    label = f"{family.name} {config.variant} x{config.scale}"
    start_from = request.output if request.resume else request.weights
    resume_state = None
    if start_from:
        checkpoint = read_checkpoint(start_from)
        saved = checkpoint.metadata.get("config")
        if saved is not None and saved != config.to_dict():
            raise UserError(f"{start_from} was trained as {saved}, not {config.to_dict()}: ask for the same variant, "
                            "scale and pixel range")
        load_strict(model, checkpoint.state_dict, label)
        if request.resume:
            if checkpoint.metadata.get("stage") != stage:
                raise UserError(f"{request.output} was saved in training stage {checkpoint.metadata.get('stage')}, "
                                f"not {stage}: «resume» it with «stage» {checkpoint.metadata.get('stage')}")
            resume_state = torch.load(request.output, map_location="cpu", weights_only=True).get("train_state")
            if resume_state is None:
                raise UserError(f"{request.output} is a finished run ({checkpoint.metadata.get('iterations')} "
                                "iterations): there is nothing to resume; start over instead")
    if stage:
        model.set_stage(stage)
    pairs = load_pairs(request.data, config.scale, config.colors, min_lr_side=settings.lr_patch,
                       hr_scales=request.hr_scales)
    averaged = f", weight average {settings.ema:g}" if settings.ema else ""
    regularized = f" + {settings.regularization:g} x regularization" if settings.regularization is not None else ""
    parallel = f" on {ranks.world} ranks ({settings.batch // ranks.world} each)" if ranks.world > 1 else ""
    progress(f"training {label} on {len(pairs.names)} images ({len(pairs.skipped)} skipped) for {settings.iters} "
             f"iterations: batch {settings.batch}{parallel}, LR patch {settings.lr_patch}, Adam lr {settings.lr:g} "
             f"({settings.schedule}){averaged}, {f'stage {stage}' if stage else settings.loss.upper()}{regularized}, "
             f"seed {settings.seed}")
    train(model, family, config, pairs, settings, request.output, resume_state, progress, bar)
    return family, config, model
