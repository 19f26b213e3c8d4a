"""SplitSR: key names, config inference, the MeanShift folds, ONNX/TFLite parity and ops, CLI verify."""

import importlib.util
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgesr.check import check_output
from edgesr.checkpoints import load_strict, save_checkpoint
from edgesr.cli import main as cli_main
from edgesr.errors import UserError
from edgesr.export import exporter
from edgesr.export.onnx import onnx_op_counts
from edgesr.export.tflite import tflite_op_counts, tflite_weight_dtypes
from edgesr.families.splitsr.model import (
    SplitSR,
    SplitSRBlock,
    SplitSRConfig,
    SplitSRPlain,
    config_from_state_dict,
    is_deploy_state_dict,
    parse_variant,
)
from edgesr.family import get_family
from edgesr.model import Prepared, prepare
from edgesr.nn.layers import RGB_MEAN
from edgesr.profile import count_params

SIZES = [(16, 16), (13, 7), (5, 11), (1, 1)]
TINY = "A0.25-G2B2-H1-C8"  # one split group, one RCAN group, a = 2 of 8 channels
TINY_BIC = TINY + "-BIC"  # + a global bicubic residual


def _model(variant: str = TINY, scale: int = 2, seed: int = 0) -> SplitSR:
    """A tiny SplitSR with every bias perturbed away from its init, as after training."""
    torch.manual_seed(seed)
    model = SplitSR(parse_variant(variant, scale))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and name.endswith(".bias"):
                p.add_(torch.randn(p.shape) * 0.1)
    return model.eval()


def _err(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


def _used(deploy: torch.nn.Module, model: torch.nn.Module, x: torch.Tensor) -> float:
    """The deploy graph's output against the training graph's, as a share of the error-model bound."""
    with torch.no_grad():
        return check_output(model, x.numpy(), deploy(x), deploy).used


def _rgb(h: int, w: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return (torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 255).to(dtype)


# --- architecture and state_dict contract -------------------------------------------------

def test_state_dict_keys_follow_rcan_and_load_strict():
    model = _model("A0.25-G2B1-H1-C16", 4)
    sd = model.state_dict()
    conv = lambda p: {f"{p}.weight", f"{p}.bias"}  # noqa: E731
    expected = (conv("sub_mean") | conv("head.0") | conv("body.0.body.0.body.0") | conv("body.0.body.0.body.2")
                | conv("body.0.body.1") | conv("body.1.body.0.body.0") | conv("body.1.body.0.body.2")
                | conv("body.1.body.0.body.3.conv_du.0") | conv("body.1.body.0.body.3.conv_du.2")
                | conv("body.1.body.1") | conv("body.2") | conv("tail.0.0") | conv("tail.0.2") | conv("tail.1")
                | conv("add_mean"))
    assert set(sd) == expected
    assert sd["body.0.body.0.body.0.weight"].shape == (4, 4, 3, 3)  # split conv: a = 0.25 x 16
    assert sd["body.1.body.0.body.0.weight"].shape == (16, 16, 3, 3)  # RCAB conv: full width
    assert sd["body.1.body.0.body.3.conv_du.0.weight"].shape == (1, 16, 1, 1)  # C // 16
    assert sd["tail.0.0.weight"].shape == sd["tail.0.2.weight"].shape == (64, 16, 3, 3)  # x4 = 2 x2 stages
    assert torch.allclose(sd["add_mean.bias"], 255 * torch.tensor(RGB_MEAN)) and not model.add_mean.weight.requires_grad
    assert count_params(model) == sum(v.numel() for k, v in sd.items() if "_mean." not in k)
    fresh = SplitSR(model.config).eval()
    load_strict(fresh, sd, "splitsr")
    x = _rgb(9, 6)
    assert _err(fresh, model, x) == 0
    with pytest.raises(UserError, match="missing keys: body.1.body.0.body.3"):
        load_strict(fresh, {k: v for k, v in sd.items() if ".body.3." not in k}, "splitsr")
    deploy_sd = model.reparameterize().state_dict()
    assert set(deploy_sd) == (expected - conv("sub_mean") - conv("add_mean")) | {"input_offset"}


def test_split_block_processes_the_first_slice_and_puts_it_last():
    block = SplitSRBlock(8, 2).eval()
    x = torch.randn(1, 8, 5, 7)
    with torch.no_grad():
        out = block(x)
        assert torch.equal(out[:, :6], x[:, 2:])  # passive channels pass unchanged, moved forward
        assert torch.equal(out[:, 6:], block.body(x[:, :2]) + x[:, :2])  # processed slice last
        # C / a = 4 blocks touch every channel once and restore the channel order.
        chain = torch.nn.Sequential(*[SplitSRBlock(8, 2) for _ in range(4)]).eval()
        touched = chain(x) - x
        assert all(touched[:, c].abs().max() > 0 for c in range(8))
        for blk in chain:
            for p in blk.parameters():
                p.zero_()
        assert torch.equal(chain(x), x)


@pytest.mark.parametrize("variant,scale", [(TINY, 2), ("A0.5-G2B1-H1-C8", 3), ("A1-G1B2-H1-C8", 4),
                                           ("A0.25-G2B1-H0-C16", 4), ("A0.375-G2B2-H2-C8", 3), (TINY_BIC, 3)])
def test_config_inference_round_trip(variant, scale):
    config = parse_variant(variant, scale)
    train = SplitSR(config)
    for sd, deploy in ((train.state_dict(), False), (train.reparameterize().state_dict(), True)):
        assert is_deploy_state_dict(sd) == deploy
        found = config_from_state_dict(sd)
        assert found == config and found.variant == config.variant


def test_config_inference_refuses_other_layouts():
    with pytest.raises(UserError, match="not a SplitSR state_dict"):
        config_from_state_dict({"backbone.0.conv3x3.weight": torch.zeros(8, 1, 3, 3)})
    sd = SplitSR(parse_variant(TINY, 2)).state_dict()
    sd["tail.0.0.weight"] = torch.zeros(40, 8, 3, 3)
    with pytest.raises(UserError, match="upsampler"):
        config_from_state_dict(sd)


def test_variant_parsing_and_validation():
    assert parse_variant("a0.250-g6b6-h3-c64", 4).variant == "A0.25-G6B6-H3-C64"
    assert parse_variant("A.5-G2B2-H1-C16", 2).active_channels == 8
    assert parse_variant("a0.25-g2b2-h1-c16-bic", 4).variant == "A0.25-G2B2-H1-C16-BIC"
    assert parse_variant("A0.25-G2B2-H1-C16-BIC", 4).bicubic_skip and not parse_variant(TINY, 4).bicubic_skip
    shipped_default = SplitSRConfig(0.25, 8, 2, 1, 16, bicubic_skip=True)
    assert get_family("splitsr").config(None, None) == shipped_default
    for bad, message in [("G6B6", "unknown splitsr variant"), ("A0.3-G2B2-H1-C16", "whole number"),
                         ("A0.25-G2B2-H3-C16", "hybrid index 3"), ("A1.5-G2B2-H1-C16", "alpha 1.5"),
                         ("A0-G2B2-H1-C16", "alpha 0")]:
        with pytest.raises(UserError, match=message):
            parse_variant(bad, 2)
    with pytest.raises(UserError, match="scale 5"):
        parse_variant(TINY, 5)


# --- re-parameterization -----------------------------------------------------------------

@pytest.mark.parametrize("variant,scale", [(TINY, 2), ("A0.5-G2B1-H1-C8", 3), (TINY, 4), ("A1-G1B1-H1-C8", 4),
                                           (TINY_BIC, 4), (TINY_BIC, 3)])
def test_reparameterized_graph_matches_training_graph(variant, scale):
    model = _model(variant, scale)
    deploy = model.reparameterize()
    assert isinstance(deploy, SplitSRPlain) and not deploy.training
    assert not any(".sub_mean" in n or "add_mean" in n for n, _ in deploy.named_modules())
    for i, (h, w) in enumerate(SIZES):
        x = _rgb(h, w, i)
        with torch.no_grad():
            out, ref = deploy(x), model(x)
        assert out.shape == ref.shape == (1, 3, h * scale, w * scale)
        assert _used(deploy, model, x) <= 1, (h, w)


@pytest.mark.parametrize("variant", [TINY, TINY_BIC])
def test_reparameterize_in_float64_is_exact(variant):
    model = _model(variant, 3).double()
    deploy = model.reparameterize()
    assert deploy.head[0].weight.dtype == torch.float64
    assert _err(deploy, model, _rgb(11, 6, dtype=torch.float64)) <= 1e-9


def test_bicubic_variant_is_bicubic_plus_what_the_network_learns():
    """-BIC: with the tail conv zeroed the network is exactly PyTorch's bicubic upsampling of
    the input (sub_mean and add_mean cancel around it); the residual is what the rest adds."""
    model = _model(TINY_BIC, 4).double()
    x = _rgb(9, 7, dtype=torch.float64)
    bicubic = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    with torch.no_grad():
        assert (model(x) - bicubic).abs().max().item() > 1  # trained-like weights: the tail adds detail
        model.tail[1].weight.zero_()
        model.tail[1].bias.zero_()
        assert (model(x) - bicubic).abs().max().item() <= 1e-9
        assert (model.reparameterize()(x) - bicubic).abs().max().item() <= 1e-9


@pytest.mark.parametrize("variant", [TINY, TINY_BIC])
def test_meanshift_matrix_folds_exactly_with_non_unit_std(variant):
    """RCAN's MeanShift divides by std: the matrix part folds into the head/tail convs (and, in
    -BIC variants, into the bicubic residual's colour mix)."""
    model = _model(variant, 2)
    std = torch.tensor([0.5, 0.25, 2.0])
    with torch.no_grad():
        for shift, sign in ((model.sub_mean, -1), (model.add_mean, 1)):
            shift.weight.copy_(torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1))
            shift.bias.copy_(sign * 255 * torch.tensor(RGB_MEAN) / std)
    deploy = model.reparameterize()
    assert torch.allclose(deploy.input_offset.flatten(), -255 * torch.tensor(RGB_MEAN), atol=1e-4)
    for i, (h, w) in enumerate(SIZES[:3]):
        assert _used(deploy, model, _rgb(h, w, i)) <= 1
    if model.config.bicubic_skip:  # forgetting the colour mix of the bicubic residual is caught
        unmixed = model.reparameterize()
        with torch.no_grad():
            unmixed.bicubic.copy_(model.bicubic)
        assert _used(unmixed, model, _rgb(16, 16)) > 1
    with torch.no_grad():  # forgetting the matrix in the head fold is caught
        deploy.head[0].weight.copy_(model.head[0].weight)
    assert _used(deploy, model, _rgb(16, 16)) > 1


def test_folding_the_mean_into_the_head_bias_breaks_only_the_borders():
    """Why input_offset stays an explicit add: the head conv zero-pads the mean-subtracted image,
    so a bias fold is exact inside the image but wrong wherever a 3x3 tap reads padding."""
    model = _model(TINY, 2)
    deploy = model.reparameterize()
    head = deploy.head[0]
    naive = torch.nn.Conv2d(3, 8, 3, padding=1)
    with torch.no_grad():
        naive.weight.copy_(head.weight)
        naive.bias.copy_(head.bias + (head.weight * deploy.input_offset.view(1, 3, 1, 1)).sum((1, 2, 3)))
        x = _rgb(13, 7)
        diff = (naive(x) - head(x + deploy.input_offset)).abs()
    assert diff[..., 1:-1, 1:-1].max().item() <= 1e-3  # interior: identical up to rounding
    assert diff[..., 0, :].min().item() > 1e-2 and diff[..., :, -1].min().item() > 1e-2  # every border pixel
    with torch.no_grad():  # and the whole network then misses the bound
        deploy.head[0].bias.copy_(naive.bias)
        deploy.input_offset.zero_()
    assert _used(deploy, model, x) > 100


@pytest.mark.parametrize("broken", ["tail-bias-without-mean", "offset-dropped", "split-order-swapped",
                                    "bicubic-tap-rounded", "bicubic-reads-raw-input"])
def test_broken_deploy_graph_is_caught_by_the_error_model(broken):
    model = _model(TINY_BIC if broken.startswith("bicubic") else TINY, 2)
    deploy = model.reparameterize()
    with torch.no_grad():
        if broken == "bicubic-tap-rounded":  # one phase weight off by 1e-3
            deploy.bicubic[5, 1, 2, 2] += 1e-3
        elif broken == "bicubic-reads-raw-input":  # the residual of x instead of x + offset

            def raw(self, x):
                return self._plus_bicubic(self._trunk(x + self.input_offset), x)

            deploy.forward = types.MethodType(raw, deploy)
        elif broken == "tail-bias-without-mean":
            deploy.tail[1].bias -= model.add_mean.bias
        elif broken == "offset-dropped":
            deploy.input_offset.zero_()
        else:  # the processed slice concatenated first instead of last, in the deploy graph only

            def swapped(self, x):
                active, passive = torch.split(x, [self.active, self.channels - self.active], dim=1)
                return torch.cat([self.body(active) + active, passive], dim=1)

            for block in deploy.modules():
                if isinstance(block, SplitSRBlock):
                    block.forward = types.MethodType(swapped, block)
    assert _used(deploy, model, _rgb(16, 16)) > 1


def test_checkpoints_of_both_layouts_reload_through_prepare(tmp_path):
    model = _model(TINY, 3)
    deploy = model.reparameterize()
    save_checkpoint(tmp_path / "train.pt", model, "splitsr", model.config.to_dict(), "train")
    save_checkpoint(tmp_path / "deploy.pt", deploy, "splitsr", model.config.to_dict(), "deploy")
    torch.save(model.state_dict(), tmp_path / "raw.pth")
    x = _rgb(7, 9)
    for name in ("train.pt", "deploy.pt", "raw.pth"):
        prepared = prepare("splitsr", weights=tmp_path / name)
        assert prepared.config == model.config and (prepared.train is None) == (name == "deploy.pt")
        assert _err(prepared.deploy, deploy, x) == 0
    with pytest.raises(UserError, match="variant A0.5-G2B2-H1-C8 was asked for"):
        prepare("splitsr", "A0.5-G2B2-H1-C8", weights=tmp_path / "raw.pth")


# --- ONNX and TFLite -----------------------------------------------------------------------

def _prepared(scale: int, variant: str = TINY) -> Prepared:
    train = _model(variant, scale)
    return Prepared.of(train, "splitsr", "test weights")


def _file_passes(prepared: Prepared, path) -> bool:
    return exporter.parity(prepared, path, "fp32").passed


def test_onnx_export_is_dynamic_native_and_exact(tmp_path):
    prepared = _prepared(4)
    path = tmp_path / "m.onnx"
    exporter.write_graph(prepared, "deploy", "onnx", "fp32", path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[2].dim_param and dims[3].dim_param
    ops = onnx_op_counts(path)
    assert "Transpose" not in ops and ops["Concat"] == 2 and ops["DepthToSpace"] == 2
    assert {"Split", "Slice"} & set(ops)
    assert _file_passes(prepared, path)


@pytest.mark.parametrize("scale", [4, 3])
def test_tflite_fp32_uses_split_concat_no_transpose_and_is_exact(scale, tmp_path):
    prepared = _prepared(scale)
    path = tmp_path / "m.tflite"
    exporter.write_graph(prepared, "deploy", "tflite", "fp32", path)
    ops = tflite_op_counts(path)
    assert "TRANSPOSE" not in ops and "DEQUANTIZE" not in ops
    assert ops["CONCATENATION"] == 2  # one per split block, nothing else concatenates
    assert {"SPLIT", "SPLIT_V", "SLICE", "STRIDED_SLICE"} & set(ops)
    assert ops["DEPTH_TO_SPACE"] == (2 if scale == 4 else 1) and "MEAN" in ops
    assert tflite_weight_dtypes(path) == {"float32"}
    assert _file_passes(prepared, path)


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_bicubic_variant_exports_exactly_with_one_more_shuffle(fmt, tmp_path):
    """The -BIC residual exports as a replicate pad, a fixed 5x5 phase conv and one more
    depth-to-space (SMSR's form: no resize op), within the fp32 bound of the training graph."""
    prepared = _prepared(4, TINY_BIC)
    path = tmp_path / f"m.{fmt}"
    exporter.write_graph(prepared, "deploy", fmt, "fp32", path)
    if fmt == "onnx":
        ops = onnx_op_counts(path)
        assert ops["DepthToSpace"] == 3 and ops["Pad"] == 1 and "Resize" not in ops and "Transpose" not in ops
    else:
        ops = tflite_op_counts(path)
        assert ops["DEPTH_TO_SPACE"] == 3 and ops["CONCATENATION"] == 2 + 2  # split blocks + the pad (one per axis)
        assert not {"RESIZE_BILINEAR", "TRANSPOSE", "DEQUANTIZE"} & set(ops)
    assert _file_passes(prepared, path)


def test_keras_twin_needs_the_permutation_of_each_x4_stage(monkeypatch):
    """Each x2 stage's conv needs its own depth_to_space permutation: dropping it for the
    second stage only is caught (run in Keras directly, no conversion)."""
    from edgesr.families.splitsr import keras as keras_splitsr

    prepared = _prepared(4)
    x = _rgb(8, 6).numpy()

    def run() -> float:
        model = keras_splitsr.build_keras_splitsr(prepared.deploy)
        out = np.asarray(model(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
        return check_output(prepared.train, x, out, prepared.deploy).used

    assert run() <= 1
    real, calls = keras_splitsr.depth_to_space_order, []

    def second_stage_identity(colors, scale):
        calls.append(scale)
        return real(colors, scale) if len(calls) == 1 else list(range(colors * scale * scale))

    monkeypatch.setattr(keras_splitsr, "depth_to_space_order", second_stage_identity)
    assert run() > 1 and calls == [2, 2]


def test_cli_verify_passes(capsys):
    code = cli_main(["verify", "--model", "splitsr", "--variant", "A0.25-G2B2-H1-C16", "--scale", "2",
                     "--precision", "fp32", "--sizes", "16x16,13x7"])
    out = capsys.readouterr().out
    assert code == 0, out
    pte_rows = 2 if "pte" in exporter.installed_formats() else 0  # train and deploy vs pte-fp32
    assert f"all {5 + pte_rows} checks passed" in out and "tflite-fp32" in out and "onnx-fp32" in out


# --- deepening a trained network (training/grow_splitsr.py) ------------------------------

def _grow_script() -> types.ModuleType:
    path = Path(__file__).resolve().parents[1] / "training" / "grow_splitsr.py"
    spec = importlib.util.spec_from_file_location("grow_splitsr", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_grown_network_computes_what_the_checkpoint_computes_until_its_new_groups_train():
    """New RCAB groups with a zero tail conv are identities: the deeper graph matches the
    checkpoint (float64, 1e-9) and moves the body's tail conv to its new index; one new tail
    weight off zero by 1e-3 changes the output."""
    model = _model(TINY_BIC, 4)
    deep, config = _grow_script().grow(model.state_dict(), model.config, 2, seed=1)
    assert config.variant == "A0.25-G4B2-H1-C8-BIC" and parse_variant(config.variant, 4) == config
    assert torch.equal(deep.body[4].weight, model.body[2].weight)  # the body's tail conv, moved
    x = _rgb(9, 7, dtype=torch.float64)
    model, deep = model.double(), deep.double().eval()
    assert _err(deep, model, x) <= 1e-9
    assert _err(deep.reparameterize(), model, x) <= 1e-9
    with torch.no_grad():
        deep.body[3].body[2].weight[0, 0, 1, 1] = 1e-3
    assert _err(deep, model, x) > 1e-6


def test_grow_script_writes_a_checkpoint_the_trainer_loads(tmp_path):
    source, grown = tmp_path / "small.pt", tmp_path / "deep.pt"
    model = _model(TINY_BIC, 4)
    save_checkpoint(source, model, "splitsr", model.config.to_dict(), "train")
    assert _grow_script().main([str(source), "--add-groups", "1", "-o", str(grown)]) == 0
    prepared = prepare("splitsr", "A0.25-G3B2-H1-C8-BIC", scale=4, weights=grown)
    x = _rgb(8, 8)
    with torch.no_grad():  # zero weights give exact zeros and x + 0 = x: the same float32 output
        assert torch.equal(prepared.train(x), model(x))
