"""ECBSR training graph, its official state_dict contract, and the re-parameterization."""

import pytest
import torch
import torch.nn.functional as F

from edgesr.check import check_output
from edgesr.checkpoints import load_strict, read_checkpoint, save_checkpoint
from edgesr.errors import UserError
from edgesr.families.ecbsr.model import (
    ECBSR,
    ECBSRConfig,
    ECBSRPlain,
    config_from_state_dict,
    is_deploy_state_dict,
    parse_variant,
)
from edgesr.family import get_family
from edgesr.model import RandomWeightsWarning, prepare

OFFICIAL_BLOCK_KEYS = {
    "conv3x3.weight", "conv3x3.bias",
    "conv1x1_3x3.k0", "conv1x1_3x3.b0", "conv1x1_3x3.k1", "conv1x1_3x3.b1",
    *(f"{b}.{p}" for b in ("conv1x1_sbx", "conv1x1_sby", "conv1x1_lpl")
      for p in ("k0", "b0", "scale", "bias", "mask")),
}


def _randomize(model: ECBSR, seed: int = 0) -> ECBSR:
    """Non-trivial edge-branch scales/biases and PReLU slopes, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".scale", ".bias", "act.weight", ".b0", ".b1")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


def _official_seqconv(x, seq):
    """The authors' forward: 1x1 conv, zero-pad, then overwrite the border with b0."""
    y0 = F.conv2d(x, seq.k0, seq.b0)
    y0 = F.pad(y0, (1, 1, 1, 1), "constant", 0)
    b0 = seq.b0.view(1, -1, 1, 1)
    y0[:, :, 0:1, :] = b0
    y0[:, :, -1:, :] = b0
    y0[:, :, :, 0:1] = b0
    y0[:, :, :, -1:] = b0
    if seq.kind == "conv1x1-conv3x3":
        return F.conv2d(y0, seq.k1, seq.b1)
    return F.conv2d(y0, seq.scale * seq.mask, seq.bias, groups=seq.mask.shape[0])


def _official_forward(model: ECBSR, x):
    y = x
    for block in model.backbone:
        z = block.conv3x3(y) + sum(_official_seqconv(y, getattr(block, n))
                                   for n in ("conv1x1_3x3", "conv1x1_sbx", "conv1x1_sby", "conv1x1_lpl"))
        y = block.act(z) if block.act is not None else z
    return F.pixel_shuffle(y + x, model.config.scale)


def test_state_dict_uses_the_official_key_names():
    model = ECBSR(ECBSRConfig(num_modules=2, channels=8, scale=2))
    keys = set(model.state_dict())
    for i in range(4):
        block = {k.split(".", 2)[2] for k in keys if k.startswith(f"backbone.{i}.")}
        expected = OFFICIAL_BLOCK_KEYS | ({"act.weight"} if i < 3 else set())
        assert block == expected, i
    assert model.state_dict()["backbone.0.conv1x1_sbx.mask"].shape == (8, 1, 3, 3)
    assert model.state_dict()["backbone.0.act.weight"].shape == (8,)  # per-channel PReLU


def test_forward_equals_the_authors_explicit_bias_padding():
    model = _randomize(ECBSR(ECBSRConfig(2, 8, 3)))
    x = torch.rand(1, 1, 13, 10) * 255
    with torch.no_grad():
        official = _official_forward(model, x)  # the same math, summed in another order
    assert check_output(model, x.numpy(), official).used <= 1.0


@pytest.mark.parametrize("config", [ECBSRConfig(4, 16, 4), ECBSRConfig(2, 8, 2, colors=3),
                                    ECBSRConfig(1, 8, 3), ECBSRConfig(2, 8, 2, with_idt=True)],
                         ids=lambda c: f"{c.variant}x{c.scale}{'-idt' if c.with_idt else ''}")
@pytest.mark.parametrize("size", [(32, 32), (17, 23), (5, 41), (1, 1)])
def test_reparameterized_graph_matches_training_graph(config, size):
    model = _randomize(ECBSR(config))
    deploy = model.reparameterize()
    assert isinstance(deploy, ECBSRPlain) and not deploy.training
    x = torch.rand(2, config.colors, *size)
    with torch.no_grad():
        out = deploy(x)
    assert out.shape == (2, config.colors, size[0] * config.scale, size[1] * config.scale)
    for pixels in (x, x * 255):
        assert check_output(model, pixels.numpy(), deploy(pixels), deploy).used <= 1.0


def test_reparameterize_in_float64_is_exact():
    model = _randomize(ECBSR(ECBSRConfig(2, 8, 2))).double()
    deploy = model.reparameterize()
    assert deploy.backbone[0].conv3x3.weight.dtype == torch.float64
    x = torch.rand(1, 1, 19, 14, dtype=torch.float64)
    with torch.no_grad():
        assert (deploy(x) - model(x)).abs().max().item() <= 1e-12


def test_broken_fold_is_caught_by_the_error_model():
    """The bound is tight enough to catch a branch dropped from the fold."""
    model = _randomize(ECBSR(ECBSRConfig(1, 8, 2)))
    deploy = model.reparameterize()
    with torch.no_grad():
        k, b = model.backbone[1].conv1x1_lpl.fused()
        deploy.backbone[1].conv3x3.weight -= k.float()
        deploy.backbone[1].conv3x3.bias -= b.float()
        x = torch.rand(1, 1, 16, 16)
        assert check_output(model, x.numpy(), deploy(x), deploy).used > 100


def _gradients(module: torch.nn.Module, params: list, x: torch.Tensor, probe: torch.Tensor):
    """The output and d(sum(output * probe))/d(every weight)."""
    out = module(x)
    return out, torch.autograd.grad((out * probe).sum(), params)


@pytest.mark.parametrize("config", [ECBSRConfig(2, 8, 2), ECBSRConfig(1, 4, 3, colors=3),
                                    ECBSRConfig(1, 4, 2, with_idt=True)],
                         ids=lambda c: f"{c.variant}x{c.scale}{'-idt' if c.with_idt else ''}")
def test_a_training_step_through_the_online_fold_has_the_branches_values_and_gradients(config):
    """What `train` runs (the family's training_step_graph: each ECB folded on every forward) is the
    training graph's function of the input and of every branch weight: in float64 values and gradients
    agree to 1e-10 of the block's largest (the difference is rounding only), borders included. (An edge
    branch's b0 has a zero gradient: its template sums to 0; both graphs give rounding noise there.)"""
    model = _randomize(ECBSR(config)).double().train()
    stepped = get_family("ecbsr").training_step_graph(model)
    assert not list(stepped.parameters(recurse=False))  # no weights of its own: the optimizer's stay in use
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad], strict=True)
    x = torch.rand(2, config.colors, 11, 9, dtype=torch.float64) * 255
    probe = torch.randn(2, config.colors, 11 * config.scale, 9 * config.scale, dtype=torch.float64)
    ref_out, ref_grads = _gradients(model, params, x, probe)
    out, grads = _gradients(stepped, params, x, probe)
    assert (out - ref_out).abs().max() <= 1e-10 * ref_out.abs().max()
    block_scale: dict[str, float] = {}
    for name, ref in zip(names, ref_grads, strict=True):
        block = name.rsplit(".", 2)[0]
        block_scale[block] = max(block_scale.get(block, 0.0), ref.abs().max().item())
    for name, p, ref, got in zip(names, params, ref_grads, grads, strict=True):
        assert got.shape == p.shape
        assert (got - ref).abs().max() <= 1e-10 * block_scale[name.rsplit(".", 2)[0]], name


def test_a_fold_that_drops_the_bias_padding_changes_the_training_step(monkeypatch):
    """The check above fails a fold that is right inside the image but wrong at its borders (the
    1x1 conv's bias not spread over the 3x3 taps): the online fold is tested, not assumed."""
    from edgesr import fold

    model = _randomize(ECBSR(ECBSRConfig(1, 4, 2))).double().train()
    exact = fold.fuse_1x1_kxk
    monkeypatch.setattr(fold, "fuse_1x1_kxk", lambda k0, b0, k1, b1: (exact(k0, b0, k1, b1)[0], b1.double()))
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64) * 255
    with torch.no_grad():
        gap = (get_family("ecbsr").training_step_graph(model)(x) - model(x)).abs().max()
    assert gap > 1e-3 * model(x).abs().max()


def test_rgb_residual_adds_each_colour_to_its_own_subpixels():
    model = ECBSR(ECBSRConfig(1, 4, 2, colors=3))
    with torch.no_grad():
        for p in model.backbone.parameters():
            if p.requires_grad:
                p.zero_()
    x = torch.rand(1, 3, 5, 6)
    with torch.no_grad():
        expected = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        assert torch.allclose(model(x), expected)


def test_config_inference_from_both_layouts():
    config = ECBSRConfig(3, 8, 3, colors=3)
    train_sd = ECBSR(config).state_dict()
    plain_sd = ECBSR(config).reparameterize().state_dict()
    assert not is_deploy_state_dict(train_sd) and is_deploy_state_dict(plain_sd)
    for sd in (train_sd, plain_sd):
        found = config_from_state_dict(sd)
        assert (found.num_modules, found.channels, found.scale, found.colors) == (3, 8, 3, 3)


def test_variant_parsing():
    assert parse_variant("m4c16", 2).variant == "M4C16"
    assert parse_variant("M8C16-rgb", 3).colors == 3
    with pytest.raises(UserError, match="unknown ecbsr variant"):
        parse_variant("M4", 2)
    with pytest.raises(UserError, match="scale 5"):
        get_family("ecbsr").config("M4C16", 5)


def test_deploy_checkpoint_round_trip(tmp_path):
    config = ECBSRConfig(1, 4, 2)
    deploy = _randomize(ECBSR(config)).reparameterize()
    path = tmp_path / "plain.pt"
    save_checkpoint(path, deploy, "ecbsr", config.to_dict(), "deploy")
    ckpt = read_checkpoint(path)
    assert ckpt.source_format == "edgesr" and ckpt.metadata["graph"] == "deploy"
    reloaded = ECBSRPlain(config)
    load_strict(reloaded, ckpt.state_dict, "ecbsr")
    prepared = prepare("ecbsr", weights=path)
    assert prepared.train is None and prepared.reference_name == "deploy"
    x = torch.rand(1, 1, 9, 7)
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(x), deploy(x))
        assert torch.equal(prepared.deploy(x), deploy(x))


@pytest.mark.parametrize("wrapper", ["raw", "params", "params_ema", "module"])
def test_official_and_basicsr_checkpoints_load_strict(tmp_path, wrapper):
    model = _randomize(ECBSR(ECBSRConfig(1, 4, 2)))
    sd = model.state_dict()
    obj = {"raw": sd, "params": {"params": sd}, "params_ema": {"params_ema": sd},
           "module": {f"module.{k}": v for k, v in sd.items()}}[wrapper]
    torch.save(obj, tmp_path / "ckpt.pth")
    prepared = prepare("ecbsr", weights=tmp_path / "ckpt.pth")
    assert prepared.config.variant == "M1C4" and prepared.config.scale == 2
    assert prepared.config.pixel_range == (1.0 if wrapper.startswith("params") else 255.0)
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(prepared.train(x), model(x))


def test_random_init_default_is_announced_and_reproducible():
    with pytest.warns(RandomWeightsWarning, match="does not super-resolve"):
        a = prepare("ecbsr", "M1C4", 2)
    with pytest.warns(RandomWeightsWarning):
        b = prepare("ecbsr", "M1C4", 2)
    assert not a.pretrained
    for (ka, va), (kb, vb) in zip(a.train.state_dict().items(), b.train.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
