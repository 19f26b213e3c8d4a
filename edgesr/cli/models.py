"""`edgesr models`: every family, preset and scale with parameters and MACs per LR pixel."""

from __future__ import annotations

import argparse

from edgesr.cli.common import Parser, add_json, progress, say, write_json


def run(args: argparse.Namespace) -> int:
    import edgesr.families  # noqa: F401  (registers the built-in families)
    from edgesr import table
    from edgesr.family import families, get_family
    from edgesr.models_table import family_rows

    chosen = [get_family(args.model)] if args.model else families()
    payload = {}
    for family in chosen:
        progress(f"measuring {family.name}: {len(family.presets)} presets x {len(family.scales)} scales")
        rows = family_rows(family)
        payload[family.name] = rows
        graphs = [name for name in rows[0]["deploy_macs_per_pixel"]]
        say(args, f"{family.name}: {family.summary}")
        say(args, table.render(
            ["variant", "scale", "params train", "params deploy", "MACs/px train",
             *[f"MACs/px {g}" for g in graphs], "GMAC 360x640"],
            [[r["variant"], f"x{r['scale']}", f"{r['params_train']:,}", f"{r['params_deploy']:,}",
              f"{r['train_macs_per_pixel']:,.0f}", *[f"{r['deploy_macs_per_pixel'][g]:,.0f}" for g in graphs],
              "-" if r["gmac_360x640"] is None else f"{r['gmac_360x640']:.2f}"] for r in rows],
            right=[False, True, True, True, True, *[True] * len(graphs), True]))
    say(args, "MACs are multiply-accumulates of conv/linear layers (1 MAC = 2 FLOPs), per low-resolution pixel "
              "(per tile pixel for a graph that runs on tiles); GMAC 360x640: the deploy graph on a whole image "
              "('-' where glue decides what runs, e.g. ClassSR: classifier + one branch per tile)")
    write_json(args, payload)
    return 0


def add(sub) -> None:
    parser: Parser = sub.add_parser("models", help="list models, variants, params and MACs per LR pixel",
                                    description="List every model family, preset and scale with parameter counts and "
                                    "MACs per low-resolution pixel (training and deploy graphs).")
    parser.add_argument("--model", help="only this model family")
    add_json(parser, "the table")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    parser.set_defaults(func=run)
