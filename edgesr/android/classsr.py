"""`edgesr bench --device adb --model classsr`: benchmark each graph of a ClassSR bundle on the
phone with benchmark_model, then combine them with the class histogram the same bundle
measures on the host (LiteRT) for a real photo of the requested size.

Per input size, delegate and thread count: the classifier runs once on all N tiles (one
batch), each subnet on a batch of B tiles (B = the host runtime's batch, 64, or N if fewer).
Estimated routed latency = classifier(N) + sum_k count_k * subnet_k(B) / B; the largest-branch
baseline = N * largest(B) / B. Tiling and stitching (host-side numpy, ~10% of the host total)
are not part of the device estimate, which the CLI says. Fresh weights route with the host
bench's edge-energy classifier (benchmarks/classsr_routed.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from edgesr.android.adb import Adb
from edgesr.android.bench import DeviceCase, DeviceSettings, device_case_record, run_device_bench
from edgesr.bench import report as reports
from edgesr.bench.classsr_routed import photo_input, with_routing_weights
from edgesr.bench.host import parse_shape
from edgesr.errors import UserError
from edgesr.pipeline import PreparedModel
from edgesr.families.classsr.routing import DEFAULT_BATCH, RoutedBundle, read_manifest


def _combine(manifest: dict, names: list[str], histogram: list[int], tiles: int, batch: int,
             mean_ms: dict[str, float]) -> dict:
    per_tile = {name: mean_ms[name] / batch for name in names[1:]}
    routed = mean_ms["classifier"] + sum(n * per_tile[name] for n, name in zip(histogram, names[1:], strict=True))
    macs = [int(c["macs_per_tile"]) for c in manifest["classes"]]
    largest = tiles * per_tile[names[1 + macs.index(max(macs))]]
    spent = tiles * int(manifest["classifier"]["macs_per_tile"]) + sum(n * m for n, m in zip(histogram, macs,
                                                                                            strict=True))
    return {"routed_ms": routed, "largest_ms": largest, "speedup": largest / routed, "macs_spent": spent,
            "macs_largest": tiles * max(macs)}


def bench_bundle_on_device(adb: Adb, serial: str, bundle_dir: Path | None,
                           prepare_model: Callable[[], PreparedModel] | None, delegates: list[str],
                           threads: list[int], inputs: list[str], settings: DeviceSettings,
                           progress: Callable[[str], None]) -> dict:
    """Export (or take) a TFLite bundle, benchmark its four graphs on the device, combine."""
    with tempfile.TemporaryDirectory(prefix="edgesr-adb-classsr-") as tmp:
        if bundle_dir is None:
            from edgesr.families.classsr.bundle import export_bundle

            prepared = with_routing_weights(prepare_model(), "rocket")
            progress(f"exporting and verifying {prepared.label} tflite fp32 bundle")
            bundle_dir = export_bundle(prepared, "tflite", "fp32", Path(tmp) / "bundle").path
        manifest = read_manifest(bundle_dir)
        if manifest.get("runtime") != "tflite":
            raise UserError(f"bundle {bundle_dir} holds {manifest.get('runtime')} graphs: the phone bench needs a "
                            "tflite bundle (edgesr export --model classsr --format tflite)")
        bundle = RoutedBundle(bundle_dir)
        t, colors = bundle.tiling.tile, bundle.colors
        names = ["classifier"] + [c["graph"] for c in manifest["classes"]]
        entries = {"classifier": manifest["classifier"], **{c["graph"]: c for c in manifest["classes"]}}
        measured = []
        for text in inputs:
            _, _, h, w = parse_shape(text, colors)
            result = bundle.route(photo_input(h, w))
            tiles = len(result.classes)
            measured.append((h, w, result.histogram, tiles, min(DEFAULT_BATCH, tiles)))
            progress(f"{h}x{w} photo on the host: {result.summary(bundle.class_names)}")
        records, facts = [], {}
        for name in names:
            precision = entries[name]["precision"]
            cases = list(dict.fromkeys(DeviceCase(precision, d, n, (tiles if name == "classifier" else batch, colors,
                                                                     t, t))
                                       for _, _, _, tiles, batch in measured for n in threads for d in delegates))
            facts, results = run_device_bench(adb, serial, {precision: bundle_dir / entries[name]["file"]}, cases,
                                              settings, progress)
            model = {"model": f"classsr.{name}", "variant": manifest["variant"], "scale": manifest["scale"],
                     "params": entries[name].get("params")}
            records += [device_case_record(r, serial, model, entries[name]["macs_per_tile"] / (t * t))
                        for r in results]
    report = reports.new_report(facts, {"warmup": settings.warmup, "runs": settings.runs, "cores": settings.cores,
                                        "cooldown_s": settings.cooldown_s, "max_temp_c": settings.max_temp_c,
                                        "benchmark_binary": settings.binary.name, "weights": manifest["weights"]})
    report["cases"] = records
    report["classsr"] = []
    for h, w, histogram, tiles, batch in measured:
        for n in threads:
            for d in delegates:
                mean_ms = {r["model"].split(".", 1)[1]: r["latency"]["mean_ms"] for r in records
                           if r["threads"] == n and r["delegate"] == d
                           and r["input"][0] == (tiles if r["model"] == "classsr.classifier" else batch)}
                report["classsr"].append({"input": [h, w], "threads": n, "delegate": d, "tiles": tiles, "batch": batch,
                                          "histogram": dict(zip(bundle.class_names, histogram, strict=True)),
                                          **_combine(manifest, names, histogram, tiles, batch, mean_ms)})
    return report


def format_combined(report: dict) -> str:
    """The routed-vs-largest estimate per input, delegate and thread count."""
    lines = [f"{'LR input':<9} {'delegate':<8} {'thr':>3} {'tiles':>5} {'classes':<14} {'routed ms':>9} "
             f"{'largest ms':>10} {'speed-up':>8} {'MACs routed/largest':>20}"]
    for r in report["classsr"]:
        classes = "/".join(str(v) for v in r["histogram"].values())
        size = f"{r['input'][0]}x{r['input'][1]}"
        lines.append(f"{size:<9} {r['delegate']:<8} {r['threads']:>3} {r['tiles']:>5} "
                     f"{classes:<14} {r['routed_ms']:>9.1f} {r['largest_ms']:>10.1f} {r['speedup']:>7.2f}x "
                     f"{100 * r['macs_spent'] / r['macs_largest']:>19.0f}%")
    return "\n".join(lines)
