"""Model registry and networks: shapes, ranges, gradients, architecture facts (tiny CPU configs)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from colorization import color
from colorization.models import (
    create_model,
    get_config_class,
    list_models,
    model_info,
    register_model,
)
from colorization.models.blocks import AttentionGate, UNetDecoder

ALL = list_models()
GENERATORS = list_models("generator")


def tiny_kwargs(name: str) -> dict:
    # every registered config class has tiny(): register_model rejects one without it
    return dataclasses.asdict(get_config_class(name).tiny())


def build_tiny(name: str, **override) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, **{**tiny_kwargs(name), **override})


def input_for(name: str, model: nn.Module, size: int = 64, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(1)
    if model_info(name).kind == "discriminator":
        return torch.rand(batch, model.config.in_channels, size, size) * 2 - 1
    return torch.rand(batch, 1, size, size) * 2 - 1


def first_conv(model: nn.Module) -> nn.Module:
    return next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------


def test_builtin_models_registered():
    for name in ("baseline", "resnet_unet", "eccv16", "attention_unet", "fusion", "patchgan"):
        assert name in ALL
    assert list_models("discriminator") == ["patchgan"]
    assert "patchgan" not in GENERATORS
    assert sorted(GENERATORS + list_models("discriminator")) == ALL


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError) as err:
        create_model("no_such_net")
    assert "no_such_net" in str(err.value) and "resnet_unet" in str(err.value)
    with pytest.raises(ValueError, match="baseline"):
        get_config_class("nope")


def test_unknown_field_lists_valid_fields():
    with pytest.raises(ValueError) as err:
        create_model("resnet_unet", widht=8)
    msg = str(err.value)
    assert "widht" in msg and "width" in msg and "depth" in msg


def test_unknown_kind():
    with pytest.raises(ValueError, match="generator"):
        list_models("critic")


@pytest.mark.parametrize(
    "name, bad",
    [
        ("resnet_unet", {"depth": 50}),
        ("resnet_unet", {"width": 0}),
        ("resnet_unet", {"decoder_channels": (8, 8)}),
        ("baseline", {"norm": "layer"}),
        ("baseline", {"out_channels": 313, "out_activation": "tanh"}),
        ("fusion", {"global_size": 100}),
        ("fusion", {"num_classes": -1}),
        ("patchgan", {"norm": "group"}),
        ("eccv16", {"out_activation": "sigmoid"}),
    ],
)
def test_invalid_values_raise(name, bad):
    with pytest.raises(ValueError) as err:
        create_model(name, **bad)
    assert next(iter(bad)) in str(err.value)


def test_duplicate_registration_rejected():
    cls = get_config_class("baseline")
    with pytest.raises(ValueError, match="already registered"):
        register_model("baseline", cls)(lambda cfg: nn.Identity())


def test_register_requires_frozen_dataclass():
    @dataclasses.dataclass
    class NotFrozen:
        out_channels: int = 2

        @classmethod
        def tiny(cls) -> NotFrozen:
            return cls()

    with pytest.raises(ValueError, match="frozen"):
        register_model("_tmp_not_frozen", NotFrozen)
    assert "_tmp_not_frozen" not in list_models()


def test_register_requires_tiny_config():
    # Every registered model is built by the test suite from its tiny() config; one without it
    # would silently escape the tests, so registration fails.
    @dataclasses.dataclass(frozen=True)
    class NoTiny:
        out_channels: int = 2

    with pytest.raises(ValueError, match=r"tiny\(\)"):
        register_model("_tmp_no_tiny", NoTiny)

    @dataclasses.dataclass(frozen=True)
    class WrongTiny:
        out_channels: int = 2

        @classmethod
        def tiny(cls) -> dict:
            return {"out_channels": 2}

    with pytest.raises(ValueError, match="must return a WrongTiny"):
        register_model("_tmp_wrong_tiny", WrongTiny)
    assert "_tmp_no_tiny" not in list_models() and "_tmp_wrong_tiny" not in list_models()


@pytest.mark.parametrize("name", ALL)
def test_config_json_round_trip(name):
    model = build_tiny(name)
    assert model.model_name == name
    assert isinstance(model.stride, int) and model.stride >= 1
    cfg = model.config
    assert dataclasses.is_dataclass(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, dataclasses.fields(cfg)[0].name, 1)
    data = json.loads(json.dumps(dataclasses.asdict(cfg)))
    rebuilt = create_model(name, **data)
    assert rebuilt.config == cfg
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}


# ----------------------------------------------------------------------------------------------
# Every registered network
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_output_shape_and_range(name):
    model = build_tiny(name).eval()
    x = input_for(name, model)
    with torch.no_grad():
        y = model(x)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    if model_info(name).kind == "generator":
        assert y.shape == (2, model.config.out_channels, 64, 64)
        if getattr(model.config, "out_activation", "auto") == "tanh" or (
            name in ("baseline", "fusion") and model.config.out_activation == "auto"
        ):
            assert y.abs().max() < 1.0
        # a fresh network predicts moderate values, not exploding ones
        assert y.abs().max() < 50
        assert y.std() > 0  # depends on the input: not a constant map
    else:
        assert y.shape[:2] == (2, 1) and y.shape[-1] == 64 // model.stride - 2


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_first_layer(name):
    model = build_tiny(name).train()
    x = input_for(name, model)
    if getattr(model, "num_classes", 0) > 0:
        out, logits = model.forward_with_aux(x)
        loss = out.square().mean() + logits.square().mean()
    else:
        loss = model(x).square().mean()
    loss.backward()
    g = first_conv(model).weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


@pytest.mark.parametrize("name", GENERATORS)
def test_classification_head_shape(name):
    if name == "effnet_fpn":
        pytest.skip("effnet_fpn always decodes to 2 ab channels; its bin logits come from forward_heads")
    model = build_tiny(name, out_channels=7, out_activation="auto").eval()
    with torch.no_grad():
        y = model(input_for(name, model, size=32, batch=1))
    assert y.shape == (1, 7, 32, 32)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ALL)
def test_input_size_not_multiple_of_stride_rejected(name):
    model = build_tiny(name).eval()
    ch = model.config.in_channels if model_info(name).kind == "discriminator" else 1
    bad = 8 * model.stride + model.stride // 2 if model.stride > 1 else None
    if bad is None:
        pytest.skip("stride 1 accepts every size")
    with pytest.raises(ValueError, match=str(model.stride)):
        model(torch.zeros(1, ch, bad, bad))
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(1, ch + 1, 8 * model.stride, 8 * model.stride))


# ----------------------------------------------------------------------------------------------
# Architecture facts
# ----------------------------------------------------------------------------------------------


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth, blocks, encoder_params", [(18, 8, 11_170_240), (34, 16, 21_278_400)])
def test_resnet_encoder_matches_standard_resnet(depth, blocks, encoder_params):
    # torchvision resnet18/34 have 11,689,512 / 21,797,672 parameters; minus the 1000-way fc
    # (513,000) and minus 2 of the 3 stem input channels (64*7*7*2 = 6,272).
    with torch.device("meta"):
        model = create_model("resnet_unet", depth=depth)
    from colorization.models.blocks import BasicBlock

    assert sum(isinstance(m, BasicBlock) for m in model.encoder.modules()) == blocks
    assert _count(model.encoder) == encoder_params
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())
    assert model.stride == 32


def test_resnet_unet_runs_both_depths_tiny():
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    for depth in (18, 34):
        model = create_model("resnet_unet", depth=depth, width=8).eval()
        assert model(x).shape == (2, 2, 32, 32)


def test_eccv16_default_out_channels_is_num_bins_and_paper_size():
    with torch.device("meta"):
        model = create_model("eccv16")
    q = color.num_ab_bins()
    assert model.config.out_channels == q
    assert get_config_class("eccv16")().out_channels is None
    # 313 bins in the paper give 32,235,385 parameters (the published model's count).
    assert _count(model) == 32_235_385 + (q - 313) * (256 + 1)
    dilations = [m.dilation for m in model.block5.modules() if isinstance(m, nn.Conv2d)]
    assert dilations == [(2, 2)] * 3
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in model.modules())
    assert any(isinstance(m, nn.ConvTranspose2d) for m in model.block8.modules())


def test_eccv16_predicts_at_quarter_resolution():
    model = build_tiny("eccv16").eval()
    seen = {}

    def hook(module, inputs, output):
        seen["shape"] = tuple(output.shape)

    model.head.register_forward_hook(hook)
    with torch.no_grad():
        y = model(torch.zeros(1, 1, 64, 64))
    assert seen["shape"] == (1, 2, 16, 16)
    assert y.shape == (1, 2, 64, 64)


def test_patchgan_receptive_field_is_70():
    model = create_model("patchgan", width=8).eval()  # eval: BN uses running stats (per pixel)
    x = torch.zeros(1, 3, 128, 128, requires_grad=True)
    y = model(x)
    assert y.shape == (1, 1, 14, 14)
    y[0, 0, 7, 7].backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1)).sum(dim=1))
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1)).sum(dim=0))
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


def test_patchgan_paper_size():
    with torch.device("meta"):
        model = create_model("patchgan")
    # pix2pix 70x70 discriminator with a 3-channel input and BatchNorm (bias-free normed convs)
    assert _count(model) == (
        3 * 64 * 16 + 64 + 64 * 128 * 16 + 256 + 128 * 256 * 16 + 512 + 256 * 512 * 16 + 1024 + 512 * 16 + 1
    )
    assert create_model("patchgan", width=8)(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)


def test_fusion_any_input_size_and_aux_head():
    model = build_tiny("fusion").eval()
    assert model.num_classes == 5
    for h, w in ((32, 32), (40, 72), (96, 64)):
        out, logits = model.forward_with_aux(torch.rand(2, 1, h, w) * 2 - 1)
        assert out.shape == (2, 2, h, w) and logits.shape == (2, 5)
        assert torch.isfinite(logits).all()
    no_head = build_tiny("fusion", num_classes=0)
    with pytest.raises(ValueError, match="num_classes"):
        no_head.forward_with_aux(torch.zeros(1, 1, 32, 32))
    assert not any(n.startswith("classifier") for n, _ in no_head.named_parameters())


def test_fusion_global_vector_changes_output_everywhere():
    # The global path is broadcast to every position: changing only one corner of the input changes
    # the prediction far away from it (beyond the local receptive field).
    model = build_tiny("fusion", num_classes=0).eval()
    x = torch.rand(1, 1, 128, 128) * 2 - 1
    x2 = x.clone()
    x2[..., :16, :16] = -x2[..., :16, :16]
    with torch.no_grad():
        d = (model(x) - model(x2)).abs()
    assert d[..., 112:, 112:].max() > 0


def test_attention_gate_coefficients():
    torch.manual_seed(0)
    gate = AttentionGate(x_ch=4, g_ch=6, inter_ch=2).eval()
    x, g = torch.randn(2, 4, 8, 8), torch.randn(2, 6, 8, 8)
    y = gate(x, g)
    alpha = gate.last_alpha
    assert alpha is not None and alpha.shape == (2, 1, 8, 8)
    assert alpha.min() >= 0 and alpha.max() <= 1
    torch.testing.assert_close(y, x * alpha)


def test_attention_unet_gates_every_skip():
    model = build_tiny("attention_unet")
    gates = [m for m in model.modules() if isinstance(m, AttentionGate)]
    assert len(gates) == model.config.depth


def test_unet_decoder_reuse_with_custom_encoder():
    # An encoder whose shallowest feature is at stride 2: one extra skip-less stage reaches stride 1.
    dec = UNetDecoder([4, 8, 16], [2, 4, 8], decoder_channels=(8, 4, 3)).eval()
    feats = [torch.randn(1, 4, 16, 16), torch.randn(1, 8, 8, 8), torch.randn(1, 16, 4, 4)]
    assert dec(feats).shape == (1, 3, 32, 32)
    assert dec.out_channels == 3
    default = UNetDecoder([1, 4, 8], [1, 2, 4], min_channels=2)
    assert default.decoder_channels == (4, 2)
    with pytest.raises(ValueError, match="decoder_channels"):
        UNetDecoder([4, 8, 16], [2, 4, 8], decoder_channels=(8, 4))
    with pytest.raises(ValueError, match="powers of two"):
        UNetDecoder([4, 8], [3, 6])
    with pytest.raises(ValueError, match="feature maps"):
        dec(feats[:2])


def test_one_batch_overfit_resnet_unet():
    torch.manual_seed(0)
    model = create_model("resnet_unet", width=8).train()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    target = torch.cat([0.5 * x, -0.3 * x], dim=1)  # a learnable function of the input
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = (model(x) - target).abs().mean()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first / 3


@pytest.mark.parametrize("name, kwargs", [("resnet_unet", {"width": 8}), ("fusion", {"width": 8, "global_size": 64})])
def test_onnx_export_keeps_input_size_dynamic(name, kwargs, tmp_path):
    # Skip resizing must follow the runtime sizes, not sizes frozen at export time.
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import warnings

    model = create_model(name, **kwargs).eval()
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(1, 1, 64, 64),), str(path), input_names=["l"], output_names=["out"],
            dynamic_axes={"l": {0: "b", 2: "h", 3: "w"}}, dynamo=False, opset_version=17,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 1, 96, 64) * 2 - 1
    got = session.run(None, {"l": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (2, 2, 96, 64)
    assert abs(got - expected).max() < 1e-4
