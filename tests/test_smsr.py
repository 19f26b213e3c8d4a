"""SMSR: official keys and checkpoint loading (legacy pickle too), config inference, bicubic and
ConvTranspose rewrites, kernel splitting, train (hard masks) vs deploy vs sparse path,
ONNX/TFLite on inputs with different masks, training step, bad input, CLI verify."""

import collections
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgesr.check import check_output
from edgesr.checkpoints import read_checkpoint
from edgesr.cli import main as cli_main
from edgesr.data import PairSet
from edgesr.errors import UserError
from edgesr.export import exporter
from edgesr.export.inspect import op_counts
from edgesr.families.smsr.model import (
    LAYERS,
    SMSR,
    SMSRConfig,
    config_from_state_dict,
    dense_first_order,
    hard_spatial_mask,
    is_deploy_state_dict,
    parse_variant,
    split_kernel,
)
from edgesr.families.smsr.sparse import SMSRSparse, sparse_macs_saved_per_pixel
from edgesr.family import get_family
from edgesr.images import photo_crop
from edgesr.model import Prepared, prepare
from edgesr.model_files import open_model
from edgesr.profile import macs_per_lr_pixel
from edgesr.train import TrainSettings, train

TIGHT = 1e-4  # train (hard masks) vs deploy vs sparse on 0..255: float32 re-association only
TINY = "C8-K2"


def _model(variant: str = TINY, scale: int = 2, seed: int = 0) -> SMSR:
    """A tiny SMSR with biases moved away from their init, as after training (eval mode)."""
    torch.manual_seed(seed)
    model = SMSR(parse_variant(variant, scale))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and name.endswith(".bias"):
                p.add_(torch.randn(p.shape) * 0.1)
    return model.eval()


def _rgb(h: int, w: int, seed: int = 0, batch: int = 1, dtype=torch.float32) -> torch.Tensor:
    return (torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 255).to(dtype)


def _photo(h: int, w: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(photo_crop("astronaut", h, w, 3, 255.0, np.random.default_rng(seed)))


def _mask_logits(module: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The 2-channel spatial mask logits of every SMM in one forward pass."""
    logits, hooks = [], []
    for name, sub in module.named_modules():
        if name.endswith("spa_mask"):
            hooks.append(sub.register_forward_hook(lambda _m, _i, out: logits.append(out.detach())))
    with torch.no_grad():
        module(x)
    for h in hooks:
        h.remove()
    return logits


def _masks(module, x) -> list[torch.Tensor]:
    return [hard_spatial_mask(lg) for lg in _mask_logits(module, x)]


def _min_margin(module, x) -> float:
    """Smallest |logit1 - logit0| over all pixels and SMMs: far from 0 means no argmax tie."""
    return min(float((lg[:, 1] - lg[:, 0]).abs().min()) for lg in _mask_logits(module, x))


def _err(a, b, x) -> float:
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


# --- state_dict contract and checkpoints ----------------------------------------------------

def test_state_dict_keys_are_the_authors():
    sd = _model("C16-K2", 4).state_dict()
    conv = lambda p: {f"{p}.weight", f"{p}.bias"}  # noqa: E731
    expected = conv("sub_mean") | conv("add_mean") | conv("head.0") | conv("head.2") | conv("collect.0") \
        | conv("collect.2") | conv("tail.0")
    for k in range(2):
        expected |= conv(f"body.{k}.spa_mask.0") | conv(f"body.{k}.spa_mask.3") | conv(f"body.{k}.spa_mask.5")
        expected |= {f"body.{k}.body.ch_mask"} | {f"body.{k}.body.body.{i}.weight" for i in range(LAYERS)}
        expected |= conv(f"body.{k}.body.collect") | conv(f"body.{k}.ca.conv_du.0") | conv(f"body.{k}.ca.conv_du.2")
    assert set(sd) == expected
    assert sd["body.0.body.ch_mask"].shape == (1, 16, LAYERS, 2)
    assert sd["body.0.spa_mask.5.weight"].shape == (4, 2, 3, 3)  # ConvTranspose2d(C/4 -> 2)
    assert sd["body.0.body.collect.weight"].shape == (16, 64, 1, 1)
    assert sd["collect.0.weight"].shape == (16, 32, 1, 1) and sd["tail.0.weight"].shape == (48, 16, 3, 3)


@pytest.mark.parametrize("legacy", [False, True])
def test_authors_checkpoint_loads_strict_through_prepare(tmp_path, legacy):
    """A raw state_dict (OrderedDict, as torch.save(model.state_dict())), also in the legacy
    non-zip pickle format of old PyTorch, loads strict and reproduces the model."""
    model = _model(TINY, 3)
    path = tmp_path / "model_1000.pt"
    torch.save(collections.OrderedDict(model.state_dict()), path, _use_new_zipfile_serialization=not legacy)
    prepared = prepare("smsr", weights=path)
    assert prepared.config == model.config and prepared.pretrained
    x = _rgb(10, 12)
    assert _err(prepared.train, model, x) == 0
    assert _err(prepared.deploy, model, x) <= TIGHT


def test_weights_only_loading_reads_legacy_files_and_refuses_code(tmp_path):
    """The authors' SMSR checkpoints are in PyTorch's legacy (pre-zip) format: torch.load with
    weights_only=True reads it (tensors, Parameters, OrderedDict) and refuses any other global
    in either format, before anything runs; no restricted unpickler of our own is needed."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    sd = collections.OrderedDict(w=torch.nn.Parameter(torch.ones(2, 2)), b=torch.arange(3))
    torch.save({"state_dict": sd}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    loaded = read_checkpoint(tmp_path / "legacy.pt").state_dict
    assert torch.equal(loaded["b"], torch.arange(3)) and torch.equal(loaded["w"], torch.ones(2, 2))
    for legacy in (True, False):
        path = tmp_path / f"evil-{legacy}.pt"
        torch.save({"body.0.body.ch_mask": Payload()}, path, _use_new_zipfile_serialization=not legacy)
        with pytest.raises(UserError, match="refused, it references code"):
            read_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("variant,scale", [(TINY, 2), ("C16-K1", 3), ("C8-K3", 4)])
def test_config_inference_round_trip(variant, scale):
    config = parse_variant(variant, scale)
    sd = SMSR(config).state_dict()
    assert not is_deploy_state_dict(sd)
    assert config_from_state_dict(sd) == config


def test_bad_variants_and_layouts_are_refused():
    assert parse_variant("c64-k5", 2).variant == "C64-K5"
    assert get_family("smsr").config(None, None) == SMSRConfig(16, 2)  # the shipped default
    for bad, message in [("C64", "unknown smsr variant"), ("C10-K2", "multiple of 4"), ("C8-K0", "K >= 1")]:
        with pytest.raises(UserError, match=message):
            parse_variant(bad, 2)
    with pytest.raises(UserError, match="scale 5"):
        parse_variant(TINY, 5)
    sd = SMSR(parse_variant(TINY, 2)).state_dict()
    with pytest.raises(UserError, match="SMSR is RGB"):
        config_from_state_dict({**sd, "head.0.weight": torch.zeros(8, 1, 3, 3)})
    with pytest.raises(UserError, match="not an SMSR state_dict"):
        config_from_state_dict({"backbone.0.conv3x3.weight": torch.zeros(8, 1, 3, 3)})
    with pytest.raises(UserError, match="tail conv"):
        config_from_state_dict({**sd, "tail.0.weight": torch.zeros(20, 8, 3, 3)})
    deploy_sd = _model(TINY, 2).reparameterize().state_dict()
    assert is_deploy_state_dict(deploy_sd)
    with pytest.raises(UserError, match="pass the training checkpoint"):
        config_from_state_dict(deploy_sd)


def test_checkpoint_of_another_scale_or_width_is_an_error(tmp_path, capsys):
    path = tmp_path / "x3.pth"
    torch.save(_model(TINY, 3).state_dict(), path)
    with pytest.raises(UserError, match="x3 smsr model but scale 2"):
        prepare("smsr", scale=2, weights=path)
    with pytest.raises(UserError, match="variant C16-K2 was asked for"):
        prepare("smsr", "C16-K2", weights=path)
    sd = _model(TINY, 3).state_dict()
    sd["body.1.body.body.2.weight"] = torch.zeros(8, 16, 3, 3)  # a layer of the wrong channel count
    torch.save(sd, path)
    code = cli_main(["verify", "--model", "smsr", "--weights", str(path), "--precision", "fp32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("edgesr: error: checkpoint does not match smsr C8-K2 x3")
    assert "body.1.body.body.2.weight (8, 16, 3, 3) vs (8, 8, 3, 3)" in err[-1]


# --- exact rewrites --------------------------------------------------------------------------

def test_convtranspose_phase_conv_is_exact():
    from edgesr.families.smsr.keras import convtranspose_phases

    up = torch.nn.ConvTranspose2d(4, 2, 3, 2, 1, output_padding=1).double()
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    kernel, bias = convtranspose_phases(up.weight.detach().numpy(), up.bias.detach().numpy())
    y = F.conv2d(x, torch.from_numpy(kernel).permute(3, 2, 0, 1), torch.from_numpy(bias), padding=1)
    # PixelShuffle channel o*4 + p reads depth_to_space channel p*2 + o (p = i*2 + j)
    to_pixel_shuffle = [(q % 4) * 2 + q // 4 for q in range(8)]
    with torch.no_grad():
        assert (F.pixel_shuffle(y[:, to_pixel_shuffle], 2) - up(x)).abs().max().item() <= 1e-12


def test_split_kernel_parts_reassemble_the_kernel():
    weight = torch.randn(6, 5, 3, 3)
    sparse_in = torch.tensor([0, 1, 0, 1, 1], dtype=torch.bool)
    sparse_out = torch.tensor([1, 0, 0, 1, 0, 1], dtype=torch.bool)
    parts = split_kernel(weight, sparse_in, sparse_out)
    assert parts.d2d.shape == (3, 2, 3, 3) and parts.d2s.shape == (3, 2, 3, 3)
    assert parts.s2d.shape == (3, 3, 3, 3) and parts.s2s.shape == (3, 3, 3, 3)
    rebuilt = torch.cat([torch.cat([parts.d2d, parts.s2d], 1), torch.cat([parts.d2s, parts.s2s], 1)], 0)
    out_order, in_order = dense_first_order(sparse_out), dense_first_order(sparse_in)
    assert torch.equal(rebuilt, weight[out_order][:, in_order])
    assert split_kernel(weight, torch.zeros(5, dtype=torch.bool), sparse_out).s2d.shape == (3, 0, 3, 3)


# --- train (hard masks) vs deploy vs sparse ---------------------------------------------------

@pytest.mark.parametrize("scale", [2, 3, 4])
def test_deploy_and_sparse_match_the_hard_mask_training_graph(scale):
    model = _model(TINY, scale)
    deploy = model.reparameterize()
    sparse = SMSRSparse(deploy)
    for i, (h, w, batch) in enumerate([(24, 32, 1), (13, 7, 2), (5, 11, 1), (1, 1, 1)]):
        x = _rgb(h, w, i, batch)
        assert _min_margin(model, x) > 1e-4  # no argmax tie in these inputs
        with torch.no_grad():
            ref, out_d, out_s = model(x), deploy(x), sparse(x)
        assert ref.shape == out_d.shape == out_s.shape == (batch, 3, h * scale, w * scale)
        assert (out_d - ref).abs().max().item() <= TIGHT, (h, w)
        assert (out_s - ref).abs().max().item() <= TIGHT, (h, w)


def test_float64_reparameterization_is_exact():
    model = _model(TINY, 3).double()
    x = _rgb(9, 12, dtype=torch.float64)
    deploy = model.reparameterize()
    assert _err(deploy, model, x) <= 1e-9 and _err(SMSRSparse(deploy), model, x) <= 1e-9


def test_two_images_with_different_masks_in_one_batch():
    model = _model("C16-K2", 2)
    deploy, x = model.reparameterize(), torch.cat([_photo(24, 32, 0), _rgb(24, 32, 1)])
    train_masks, deploy_masks = _masks(model, x), _masks(deploy, x)
    assert all(torch.equal(a, b) for a, b in zip(train_masks, deploy_masks))
    assert not torch.equal(train_masks[0][0], train_masks[0][1])  # the two images' masks differ
    sparse = SMSRSparse(deploy)
    assert _err(deploy, model, x) <= TIGHT and _err(sparse, model, x) <= TIGHT
    with torch.no_grad():  # batching changes nothing: each image alone gives the same output
        for i in range(2):
            assert (sparse(x[i:i + 1]) - model(x)[i:i + 1]).abs().max().item() <= TIGHT


@pytest.mark.parametrize("channels", ["all-dense", "all-sparse", "layer-alternating"])
@pytest.mark.parametrize("spatial", [-1e4, 0.0, 1e4])
def test_extreme_masks(channels, spatial):
    """Empty kernel parts and empty/full spatial masks run in every graph and still agree."""
    model = _model(TINY, 2)
    with torch.no_grad():
        for smm in model.body:
            m = smm.body.ch_mask
            if channels == "all-dense":
                m.copy_(torch.tensor([1.0, 0.0]).expand_as(m))
            elif channels == "all-sparse":
                m.copy_(torch.tensor([0.0, 1.0]).expand_as(m))
            else:
                m.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(LAYERS // 2, 1).expand_as(m))
            smm.spa_mask[5].bias.add_(torch.tensor([0.0, spatial]))
    deploy = model.reparameterize()
    sparse = SMSRSparse(deploy)
    x = _rgb(12, 10, 3)
    assert _err(deploy, model, x) <= TIGHT and _err(sparse, model, x) <= TIGHT
    if spatial:
        assert sparse.densities == [1.0 if spatial > 0 else 0.0] * 2


def test_sparse_macs_follow_density():
    deploy = _model("C16-K2", 2).reparameterize()
    dense = macs_per_lr_pixel(deploy, 3)
    assert sparse_macs_saved_per_pixel(deploy, [1.0, 1.0]) == 0
    saved = sparse_macs_saved_per_pixel(deploy, [0.0, 0.0])
    assert 0 < saved < dense
    assert sparse_macs_saved_per_pixel(deploy, [0.5, 0.5]) == pytest.approx(saved / 2)


# --- training mode ---------------------------------------------------------------------------

def test_training_mode_samples_soft_masks_and_the_loss_trains_them():
    model = _model(TINY, 2).train()
    lr, hr = _rgb(8, 8, 0, 2), _rgb(16, 16, 1, 2)
    loss = model.training_loss(lr, hr, progress=0.25)
    assert model.tau == pytest.approx(0.5) and 0 <= model.last_sparsity.item() <= 1
    loss.backward()
    assert model.body[0].body.ch_mask.grad.abs().sum() > 0
    assert model.body[1].spa_mask[5].weight.grad.abs().sum() > 0
    model.training_loss(lr, hr, progress=0.9)
    assert model.tau == pytest.approx(0.4)  # floor of the annealing
    with torch.no_grad():  # the sparsity term is 0 at progress 0 (lambda warm-up)
        torch.manual_seed(0)
        at_start = model.training_loss(lr, hr, 0.0)
        torch.manual_seed(0)
        assert at_start.item() == pytest.approx(F.l1_loss(model(lr), hr).item())


def test_the_regularization_weight_scales_the_sparsity_term():
    """loss = L1 + w min(20p, 1) sparsity: at full warm-up the weight w = 0.1 (the paper's) and a
    weight w' differ by exactly (w - w') sparsity on the same Gumbel draw; w = 0 is plain L1."""
    model = _model(TINY, 2).train()
    lr, hr = _rgb(8, 8, 0, 2), _rgb(16, 16, 1, 2)
    assert model.regularization == 0.1
    losses = {}
    with torch.no_grad():
        for weight in (0.1, 0.01, 0.0):
            model.regularization = weight
            torch.manual_seed(3)
            losses[weight] = model.training_loss(lr, hr, progress=0.5).item()
            sparsity = model.last_sparsity.item()
        torch.manual_seed(3)
        plain = F.l1_loss(model(lr), hr).item()
    assert 0 < sparsity <= 1 and losses[0.0] == pytest.approx(plain, rel=1e-6)
    assert losses[0.1] - losses[0.01] == pytest.approx(0.09 * sparsity, rel=1e-4)


def test_a_few_training_iterations_run_through_the_trainer(tmp_path):
    rng = np.random.default_rng(0)
    hr = [rng.random((3, 32, 32)).astype(np.float32) for _ in range(2)]
    pairs = PairSet(["a", "b"], [h[:, ::2, ::2].copy() for h in hr], hr, [])
    model = _model(TINY, 2).train()
    before = model.body[0].body.ch_mask.detach().clone()
    settings = TrainSettings(iters=3, batch=2, lr_patch=8, lr=1e-3, seed=0, save_every=1000, log_every=1)
    logs = []
    train(model, get_family("smsr"), model.config, pairs, settings, tmp_path / "m.pt", log=logs.append)
    assert len(logs) == 3 and not torch.equal(model.body[0].body.ch_mask, before)
    assert prepare("smsr", weights=tmp_path / "m.pt").config == model.config


# --- ONNX / TFLite ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_prepared() -> Prepared:
    train_graph = _model(TINY, 3)
    return Prepared.of(train_graph, "smsr", "test weights")


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_exported_dense_masked_graph_runs_on_inputs_with_other_masks(fmt, tiny_prepared, tmp_path):
    """Masks are computed in-graph: two sizes (one odd) and two images with different masks
    run through the same file; nothing about the pixel count is baked in."""
    path = tmp_path / f"m.{fmt}"
    exporter.write_graph(tiny_prepared, "deploy", fmt, "fp32", path)
    ops = op_counts(path)
    graph = open_model(path)
    train_graph, deploy = tiny_prepared.train, tiny_prepared.deploy
    inputs = [_photo(24, 32, 0), _rgb(24, 32, 1), _rgb(13, 19, 2)]
    densities = []
    for x in inputs:
        assert _min_margin(train_graph, x) > 1e-4
        densities.append([float(m.mean()) for m in _masks(deploy, x)])
        assert check_output(train_graph, x.numpy(), graph(x.numpy()), deploy).used <= 1
    assert densities[0] != densities[1]
    if fmt == "onnx":
        assert {"Greater", "Mul", "DepthToSpace"} <= set(ops) and "NonZero" not in ops and "ScatterND" not in ops
    else:
        assert {"GREATER", "MUL", "DEPTH_TO_SPACE", "MIRROR_PAD"} <= set(ops)
        assert "TRANSPOSE" not in ops and not any(op.startswith("RESIZE") for op in ops)


def test_cli_verify_passes_with_the_sparse_path(capsys):
    code = cli_main(["verify", "--model", "smsr", "--variant", "C8-K1", "--scale", "2", "--sizes", "16x16,13x7"])
    out = capsys.readouterr().out
    assert code == 0, out
    pte_rows = 2 if "pte" in exporter.installed_formats() else 0  # train and deploy vs pte-fp32 (pte is fp32 only)
    assert f"all {8 + pte_rows} checks passed" in out and "sparse" in out
    assert "tflite-fp32" in out and "onnx-fp32" in out
    assert "note: smsr checks fp32 and fp16 unless --precision is given" in out and "tflite-int8" not in out


# --- benchmark scripts -----------------------------------------------------------------------

def test_sparse_benchmark_sets_the_densities_it_reports(tmp_path):
    from benchmarks import smsr_sparse

    report = smsr_sparse.run("C8-K1", 2, (16, 20), (0.5,), 0.3, (0.25, 1.0), warmup=0, runs=1, seed=0)
    low, full = report["rows"]
    assert low["measured_density"] == pytest.approx(0.25, abs=0.02) and full["measured_density"] == 1.0
    assert low["macs_sparse"] < full["macs_sparse"] == full["macs_dense"]
    assert max(low["bound_used_vs_dense"].values()) <= 1 and "| 0.5 | 0.25 / 0.25 |" in smsr_sparse.to_markdown(report)
    torch.save(_model("C8-K1", 2).state_dict(), tmp_path / "m.pth")  # a checkpoint timed with its own masks
    own = smsr_sparse.run_checkpoint(tmp_path / "m.pth", (16, 20), 0.3, warmup=0, runs=1, seed=0)
    assert own["rows"][0]["target_density"] == "own" and "| own / " in smsr_sparse.to_markdown(own)


@pytest.mark.slow
def test_mask_agreement_of_an_fp32_tflite_file_is_exact():
    from benchmarks import smsr_masks

    report = smsr_masks.run("smsr", "C8-K1", 2, ["fp32"])
    row = report["rows"][0]
    assert row["flipped"] == 0 and row["mask_pixels"] > 0 and row["bound_used"] <= 1
