"""Exported-model format: save/load round trips, fp16 storage, wrappers, strictness and errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import colorization
from colorization import color
from colorization.inference import checkpoint
from colorization.inference.checkpoint import (
    CONFIG_NAME,
    DEFAULT_MODEL_DIR,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    CheckpointError,
    CheckpointNotFoundError,
    ColorModel,
    load_exported,
    save_exported,
)
from colorization.models import create_model, get_config_class, list_models, register_model, registry

GENERATORS = list_models("generator")


def tiny(name: str, **override) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name, **{**dataclasses.asdict(get_config_class(name).tiny()), **override})
    # Non-trivial BatchNorm statistics, so that buffers matter in the round trip.
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 1, 32, 32) * 2 - 1)
    return model.eval()


def l_input(size: int = 32, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(3)
    return torch.rand(batch, 1, size, size) * 2 - 1


@pytest.fixture()
def exported(tmp_path: Path) -> Path:
    return save_exported(tiny("baseline"), tmp_path / "m", head="regression")


# ----------------------------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GENERATORS)
def test_round_trip_identical_outputs(name, tmp_path):
    model = tiny(name)
    out_dir = save_exported(model, tmp_path / name, head="regression", extra={"metrics": {"psnr": 20.5}})
    assert out_dir == tmp_path / name
    assert sorted(p.name for p in out_dir.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]  # no temp files
    loaded = load_exported(out_dir)
    assert isinstance(loaded, ColorModel) and not loaded.training
    assert loaded.head == "regression" and loaded.temperature is None
    assert loaded.network.model_name == name and loaded.model_name == name
    assert loaded.network.config == model.config
    assert loaded.stride == model.stride
    assert loaded.config["metrics"] == {"psnr": 20.5}
    x = l_input()
    with torch.no_grad():
        expected = model(x)
        got = loaded(x)
    assert got.shape == (2, 2, 32, 32)
    assert torch.equal(got, expected)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[key], value), key


@pytest.mark.parametrize("name", GENERATORS)
def test_round_trip_fp16_storage(name, tmp_path):
    model = tiny(name)
    full = save_exported(model, tmp_path / "f32", head="regression")
    half = save_exported(model, tmp_path / "f16", head="regression", half=True)
    stored = load_file(str(half / WEIGHTS_NAME))
    assert all(t.dtype == torch.float16 for t in stored.values() if t.is_floating_point())
    assert json.loads((half / CONFIG_NAME).read_text())["weights_dtype"] == "float16"
    size32, size16 = (full / WEIGHTS_NAME).stat().st_size, (half / WEIGHTS_NAME).stat().st_size
    assert size16 < 0.6 * size32
    loaded = load_exported(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = l_input()
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    assert not torch.equal(got, expected)  # rounding happened ...
    scale = expected.abs().max().item()
    assert (got - expected).abs().max().item() < 2e-2 * max(scale, 1.0)  # ... but is small


def test_classification_round_trip_decodes_annealed_mean(tmp_path):
    q = color.num_ab_bins()
    model = tiny("eccv16", out_channels=q)
    out = save_exported(model, tmp_path / "cls", head="classification", extra={"temperature": 0.5})
    cfg = json.loads((out / CONFIG_NAME).read_text())
    assert cfg["head"] == "classification" and cfg["temperature"] == 0.5
    assert cfg["model_config"]["out_channels"] == q
    loaded = load_exported(out)
    assert loaded.temperature == 0.5
    x = l_input()
    with torch.no_grad():
        ab = loaded(x)
        expected = color.normalize_ab(color.annealed_mean(model(x), 0.5))
    assert ab.shape == (2, 2, 32, 32)
    torch.testing.assert_close(ab, expected, rtol=0, atol=1e-6)
    # decoded ab lies inside the hull of the bin centres
    centres = color.normalize_ab(color.ab_bins())
    for c in range(2):
        assert ab[:, c].min() >= centres[:, c].min() - 1e-6
        assert ab[:, c].max() <= centres[:, c].max() + 1e-6


def test_classification_default_temperature(tmp_path):
    model = tiny("eccv16", out_channels=color.num_ab_bins())
    loaded = load_exported(save_exported(model, tmp_path / "c", head="classification"))
    assert loaded.temperature == pytest.approx(color.DEFAULT_TEMPERATURE)


def test_config_json_contents(exported):
    cfg = json.loads((exported / CONFIG_NAME).read_text())
    assert cfg["format_version"] == FORMAT_VERSION
    assert cfg["model"] == "baseline"
    assert cfg["model_config"] == json.loads(json.dumps(dataclasses.asdict(get_config_class("baseline").tiny())))
    assert cfg["head"] == "regression" and cfg["temperature"] is None
    assert cfg["working_size"] == 256
    assert cfg["training"] == {} and cfg["metrics"] == {}
    assert cfg["weights_dtype"] == "float32"
    assert cfg["package_version"] == colorization.__version__


def test_load_accepts_file_paths_and_device(exported):
    for p in (exported / CONFIG_NAME, exported / WEIGHTS_NAME, str(exported)):
        model = load_exported(p, device=torch.device("cpu"))
        assert next(model.parameters()).device.type == "cpu"


class _CompiledLike(nn.Module):
    """Stands in for torch.compile's OptimizedModule (keys prefixed with ``_orig_mod.``) without
    paying for importing dynamo in the test run."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self._orig_mod = inner

    def forward(self, x):
        return self._orig_mod(x)


def test_wrappers_are_stripped(tmp_path):
    model = tiny("baseline")
    assert all(k.startswith("_orig_mod.") for k in _CompiledLike(model).state_dict())
    wrappers = (nn.DataParallel(model), _CompiledLike(model), nn.DataParallel(_CompiledLike(model)),
                ColorModel(model, "regression"))
    for i, wrapped in enumerate(wrappers):
        out = save_exported(wrapped, tmp_path / f"w{i}", head="regression")
        keys = list(load_file(str(out / WEIGHTS_NAME)))
        assert keys and not any(k.startswith(("module.", "_orig_mod.", "network.")) for k in keys)
        assert set(keys) == set(model.state_dict())
        loaded = load_exported(out)
        with torch.no_grad():
            assert torch.equal(loaded(l_input()), model(l_input()))


def test_strip_key():
    assert checkpoint._strip_key("module._orig_mod.encoder.conv.weight") == "encoder.conv.weight"
    assert checkpoint._strip_key("encoder._orig_mod.conv.weight") == "encoder.conv.weight"
    assert checkpoint._strip_key("head.conv.bias") == "head.conv.bias"


def test_pretrained_field_is_forced_off_on_load(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class PretrainedCfg:
        out_channels: int = 2
        pretrained: bool = False

        @classmethod
        def tiny(cls) -> PretrainedCfg:
            return cls()

    class Net(nn.Module):
        stride = 1

        def __init__(self, cfg: PretrainedCfg) -> None:
            super().__init__()
            if cfg.pretrained:
                raise AssertionError("load_exported must build with pretrained=False")
            self.conv = nn.Conv2d(1, cfg.out_channels, 1)

        def forward(self, x):
            return self.conv(x)

    register_model("_test_pretrained", PretrainedCfg)(Net)
    try:
        model = create_model("_test_pretrained")
        model.config = PretrainedCfg(pretrained=True)  # as if trained from a pretrained start
        out = save_exported(model, tmp_path / "p", head="regression", extra={"working_size": 64})
        assert json.loads((out / CONFIG_NAME).read_text())["model_config"]["pretrained"] is True
        loaded = load_exported(out)
        assert loaded.network.config.pretrained is False
        assert loaded.working_size == 64
        assert torch.equal(loaded.network.conv.weight, model.conv.weight)
    finally:
        registry._REGISTRY.pop("_test_pretrained", None)


def test_default_model_dir_location():
    assert DEFAULT_MODEL_DIR == Path(colorization.__file__).resolve().parent / "weights" / "default"


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


def test_missing_folder_and_files(tmp_path, exported):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_exported(tmp_path / "nowhere")
    assert issubclass(CheckpointNotFoundError, FileNotFoundError)
    (exported / WEIGHTS_NAME).unlink()
    with pytest.raises(CheckpointNotFoundError, match=WEIGHTS_NAME):
        load_exported(exported)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointNotFoundError, match=CONFIG_NAME):
        load_exported(empty)


def _edit_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    cfg.update(changes)
    (folder / CONFIG_NAME).write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format_version": 99}, "format_version"),
        ({"model": "no_such_net"}, "unknown model 'no_such_net'"),
        ({"model": "patchgan"}, "unknown model 'patchgan'"),
        ({"head": "segmentation"}, "head"),
        ({"head": "classification"}, "out_channels"),
        ({"model_config": {"width": 8, "depth": 2, "colour": 1}}, "colour"),
        ({"model_config": {"width": 16, "depth": 2}}, "shape mismatch"),
        ({"working_size": 102}, "multiple"),
    ],
)
def test_bad_config_rejected(exported, changes, message):
    _edit_config(exported, **changes)
    with pytest.raises(CheckpointError, match=message):
        load_exported(exported)


def test_invalid_json_rejected(exported):
    (exported / CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_exported(exported)


def _tamper(folder: Path, fn) -> None:
    state = load_file(str(folder / WEIGHTS_NAME))
    fn(state)
    save_file(state, str(folder / WEIGHTS_NAME))


def test_tampered_state_dict_rejected(tmp_path):
    model = tiny("baseline")
    src = save_exported(model, tmp_path / "src", head="regression")
    key = next(k for k in load_file(str(src / WEIGHTS_NAME)) if k.endswith("weight"))

    def rename(s):
        s[key + "_x"] = s.pop(key)

    def drop(s):
        s.pop(key)

    def add(s):
        s["extra.weight"] = torch.zeros(3)

    def reshape(s):
        s[key] = torch.zeros(*s[key].shape[:-1], s[key].shape[-1] + 1)

    cases = {"rename": (rename, "missing keys"), "drop": (drop, "missing keys"),
             "add": (add, "unexpected keys"), "reshape": (reshape, "shape mismatch")}
    for label, (fn, message) in cases.items():
        folder = tmp_path / label
        folder.mkdir()
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            (folder / name).write_bytes((src / name).read_bytes())
        _tamper(folder, fn)
        with pytest.raises(CheckpointError, match=message):
            load_exported(folder)
    # strict=False tolerates missing / unexpected keys, never wrong shapes
    assert isinstance(load_exported(tmp_path / "add", strict=False), ColorModel)
    assert isinstance(load_exported(tmp_path / "drop", strict=False), ColorModel)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_exported(tmp_path / "reshape", strict=False)


def test_pickle_weights_rejected(exported):
    torch.save({"w": torch.zeros(2)}, exported / WEIGHTS_NAME)  # a pickle, not safetensors
    with pytest.raises(CheckpointError, match="safetensors"):
        load_exported(exported)


def test_save_errors(tmp_path):
    model = tiny("baseline")
    with pytest.raises(ValueError, match="head"):
        save_exported(model, tmp_path / "a", head="segmentation")
    with pytest.raises(ValueError, match="out_channels"):
        save_exported(model, tmp_path / "b", head="classification")
    with pytest.raises(ValueError, match="reserved"):
        save_exported(model, tmp_path / "c", head="regression", extra={"model": "x"})
    with pytest.raises(ValueError, match="registered generator"):
        save_exported(nn.Conv2d(1, 2, 1), tmp_path / "d", head="regression")
    with pytest.raises(ValueError, match="registered generator"):
        save_exported(create_model("patchgan", width=8), tmp_path / "e", head="regression")
    with pytest.raises(ValueError, match="JSON"):
        save_exported(model, tmp_path / "f", head="regression", extra={"metrics": {"fid": float("nan")}})
    with pytest.raises(ValueError, match="working_size"):
        save_exported(model, tmp_path / "g", head="regression", extra={"working_size": 62})
    assert not (tmp_path / "a").exists() and not (tmp_path / "f").exists()


def test_half_overflow_rejected(tmp_path):
    model = tiny("baseline")
    with torch.no_grad():
        model.head.conv.bias.fill_(1e6)
    with pytest.raises(ValueError, match="float16"):
        save_exported(model, tmp_path / "h", head="regression", half=True)


def test_overwrite_replaces_both_files(tmp_path):
    a, b = tiny("baseline"), tiny("baseline", width=16)
    save_exported(a, tmp_path / "m", head="regression")
    save_exported(b, tmp_path / "m", head="regression")
    loaded = load_exported(tmp_path / "m")
    assert loaded.network.config.width == 16
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]


def test_chroma_gain_is_saved_applied_and_validated(tmp_path):
    net = tiny("baseline").eval()
    plain = checkpoint.save_exported(net, tmp_path / "plain", head="regression")
    gained = checkpoint.save_exported(net, tmp_path / "gained", head="regression", extra={"chroma_gain": 1.5})
    assert json.loads((plain / "config.json").read_text())["chroma_gain"] == 1.0
    assert json.loads((gained / "config.json").read_text())["chroma_gain"] == 1.5
    x = l_input()
    with torch.no_grad():
        a = load_exported(plain)(x)
        b = load_exported(gained)(x)
    torch.testing.assert_close(b, 1.5 * a)
    for bad in (0, -1.0, float("nan"), 10.0, True):
        with pytest.raises(ValueError, match="chroma_gain"):
            checkpoint.save_exported(net, tmp_path / "bad", head="regression", extra={"chroma_gain": bad})


def test_chroma_gain_spares_hinted_photos(tmp_path):
    """The gain hedges automatic colour only: in a batch, the photo with a hinted pixel keeps the
    network's colours, the one with an all-zero hint map gets the gain."""
    net = tiny("effnet_fpn", hints=True).eval()
    plain = load_exported(checkpoint.save_exported(net, tmp_path / "plain", head="regression"))
    muted = load_exported(checkpoint.save_exported(net, tmp_path / "muted", head="regression",
                                                   extra={"chroma_gain": 0.5}))
    x = l_input()
    hints = torch.zeros(2, 3, 32, 32)
    hints[1, :, 5, 7] = torch.tensor([0.4, -0.2, 1.0])  # photo 1: one hinted pixel
    with torch.no_grad():
        a, b = plain(x, hints), muted(x, hints)
        auto_a, auto_b = plain(x), muted(x)
    torch.testing.assert_close(b[0], 0.5 * a[0])
    torch.testing.assert_close(b[1], a[1])
    torch.testing.assert_close(auto_b, 0.5 * auto_a)


def test_strict_load_skips_the_random_init_and_loads_every_weight(exported):
    """#31 start-up: a strict load builds the network without its random initialisation (every
    parameter is then read from the file); the weights are the file's exactly, and construction
    elsewhere (another model, a non-strict load) still initialises."""
    from safetensors.torch import load_file

    from colorization.inference.checkpoint import _SkipRandomInit

    model = load_exported(exported)
    saved = load_file(str(exported / WEIGHTS_NAME))
    state = model.network.state_dict()
    assert set(state) == set(saved)
    assert all(torch.equal(state[k], saved[k].float()) for k in saved)
    marked = torch.full((4, 4), 7.0)
    with _SkipRandomInit():
        torch.nn.init.normal_(marked, std=1e-9)
        torch.nn.init.kaiming_uniform_(marked)
        marked.uniform_(0, 1)
        assert torch.equal(marked, torch.full((4, 4), 7.0))  # the random fills are skipped...
        assert torch.equal(torch.zeros(2).fill_(3.0), torch.full((2,), 3.0))  # ...nothing else
    torch.nn.init.normal_(marked)
    assert not torch.equal(marked, torch.full((4, 4), 7.0))  # outside the block they fill again
