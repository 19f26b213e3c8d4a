"""Deepen a trained SplitSR checkpoint without changing its function (Net2DeeperNet for RCAN).

New RCAB residual groups are appended after the last group, before the body's tail conv. A
residual group computes x + T(B(x)) with T its tail conv; with T's weight and bias zero it is
exactly the identity, so the deeper network computes what the checkpoint computes, and training
(`edgesr train --weights OUT`) starts from the checkpoint's quality with the new groups' blocks
randomly initialised (gradients reach them once T moves off zero).

    .venv/bin/python training/grow_splitsr.py CHECKPOINT --add-groups N -o OUT [--seed S]

Keys: body.{g} for g < G are kept, the body's tail conv body.{G} becomes body.{G+N}; new groups
are body.{G}..body.{G+N-1}. The script checks the identity in float64 before it writes OUT.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from edgesr.checkpoints import load_strict, read_checkpoint, save_checkpoint
from edgesr.errors import UserError
from edgesr.families.splitsr.model import SplitSR, SplitSRConfig


def grow(state_dict: dict[str, torch.Tensor], config: SplitSRConfig, add_groups: int,
         seed: int) -> tuple[SplitSR, SplitSRConfig]:
    """The deeper training graph holding `state_dict`'s weights, new groups' tail convs zero."""
    old = SplitSR(config)
    load_strict(old, state_dict, f"splitsr {config.variant} x{config.scale}")
    deep_config = dataclasses.replace(config, groups=config.groups + add_groups)
    torch.manual_seed(seed)
    deep = SplitSR(deep_config)
    body_tail = f"body.{config.groups}."
    moved = {(f"body.{deep_config.groups}." + k[len(body_tail):] if k.startswith(body_tail) else k): v
             for k, v in state_dict.items()}
    fresh = deep.state_dict()
    fresh.update(moved)
    for g in range(config.groups, deep_config.groups):
        tail = f"body.{g}.body.{config.blocks}."
        fresh[tail + "weight"] = torch.zeros_like(fresh[tail + "weight"])
        fresh[tail + "bias"] = torch.zeros_like(fresh[tail + "bias"])
    load_strict(deep, fresh, f"splitsr {deep_config.variant} x{config.scale}")
    x = torch.rand(1, 3, 24, 24, dtype=torch.float64) * 255
    with torch.no_grad():
        error = (old.double().eval()(x) - deep.double().eval()(x)).abs().max().item()
    if error > 1e-9:
        raise AssertionError(f"the deeper network differs from the checkpoint by {error:g}")
    return deep.float(), deep_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--add-groups", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.add_groups < 1:
        parser.error("--add-groups must be at least 1")
    try:
        checkpoint = read_checkpoint(args.checkpoint)
        if checkpoint.metadata.get("model") != "splitsr":
            raise UserError(f"{args.checkpoint} is not an edgesr SplitSR checkpoint: pass one `edgesr train` wrote")
        config = SplitSRConfig(**checkpoint.metadata["config"])
        deep, deep_config = grow(checkpoint.state_dict, config, args.add_groups, args.seed)
        save_checkpoint(args.output, deep, "splitsr", deep_config.to_dict(), "train")
    except (UserError, OSError) as exc:
        print(f"grow_splitsr: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UserError) else 1
    print(f"{config.variant} -> {deep_config.variant}: identical in float64, written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
