"""ONNX export (network + head decoding, dynamic shapes) and the ONNX Runtime backend."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from colorization import Colorizer, cli, color
from colorization.inference.backends import Backend
from colorization.inference.checkpoint import load_exported, save_exported
from colorization.inference.onnx_export import HINTS_NAME, INPUT_NAME, OUTPUT_NAME, OnnxBackend, export_onnx
from colorization.models import create_model

runner = CliRunner()


def _export_tiny(folder, out_channels: int = 2, head: str = "regression"):
    torch.manual_seed(0)
    net = create_model("baseline", width=8, depth=2, out_channels=out_channels)
    return save_exported(net, folder, head=head, extra={"working_size": 32})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return _export_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def onnx_file(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    result = runner.invoke(cli.app, ["export", "--model", str(model_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "max |difference|" in result.output
    return out


def _ort(path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]


@pytest.mark.parametrize("shape", [(1, 1, 32, 48), (3, 1, 60, 20)])
def test_parity_with_pytorch_at_several_sizes(model_dir, onnx_file, shape):
    model = load_exported(model_dir)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        ref = model(x).numpy()
    got = _ort(onnx_file, x)
    assert got.shape == ref.shape == (shape[0], 2, shape[2], shape[3])
    assert np.abs(got - ref).max() < 1e-3


def test_graph_has_dynamic_axes_and_metadata(onnx_file):
    proto = onnx.load(str(onnx_file))
    (inp,) = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims[1] == 1 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["colorization.stride"] == "4"
    assert meta["colorization.working_size"] == "32"
    backend = OnnxBackend(onnx_file)
    assert backend.stride == 4 and backend.working_size == 32 and backend.config["model"] == "baseline"


def test_classification_head_is_decoded_in_the_graph(tmp_path):
    folder = _export_tiny(tmp_path / "cls", out_channels=color.num_ab_bins(), head="classification")
    model = load_exported(folder)
    out = export_onnx(model, tmp_path / "cls.onnx")
    x = torch.rand(2, 1, 16, 24) * 2 - 1
    with torch.inference_mode():
        ref = model(x).numpy()
    got = _ort(out, x)
    assert got.shape == (2, 2, 16, 24)  # ab, not Q logits
    assert np.abs(got - ref).max() < 1e-3


def test_export_is_atomic_and_never_overwrites_silently(model_dir, onnx_file, tmp_path):
    before = onnx_file.read_bytes()
    result = runner.invoke(cli.app, ["export", "--model", str(model_dir), "--out", str(onnx_file)])
    assert result.exit_code == 2 and "exists" in result.output
    assert "--force" in result.output and "overwrite=True" not in result.output
    assert onnx_file.read_bytes() == before
    assert not [p for p in onnx_file.parent.iterdir() if p.name.endswith(".tmp")]
    bad = runner.invoke(cli.app, ["export", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "x.onnx")])
    assert bad.exit_code == 2 and "cannot load the model" in bad.output
    assert not (tmp_path / "x.onnx").exists()


def test_onnx_backend_matches_torch_without_a_torch_forward(model_dir, onnx_file, monkeypatch):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:37, 0:61]
    img = Image.fromarray(np.clip(x * 4 + y * 3 + rng.normal(0, 4, x.shape), 0, 255).astype(np.uint8), "L")
    torch_out = np.asarray(Colorizer.from_pretrained(model_dir, device="cpu")(img)).astype(int)
    onnx_colorizer = Colorizer.from_pretrained(onnx_file, backend="onnx")

    def no_forward(self, *args, **kwargs):
        raise AssertionError(f"torch module {type(self).__name__} was called")

    monkeypatch.setattr(torch.nn.Module, "__call__", no_forward)
    onnx_out = np.asarray(onnx_colorizer(img)).astype(int)
    batch = onnx_colorizer.colorize_batch([img, img], batch_size=2)
    monkeypatch.undo()
    assert onnx_out.shape == torch_out.shape == (37, 61, 3)
    assert np.abs(onnx_out - torch_out).max() <= 1
    assert all(np.abs(np.asarray(b).astype(int) - onnx_out).max() <= 1 for b in batch)
    assert onnx_colorizer.size == 32 and onnx_colorizer.model_name == "baseline"


def test_onnx_file_lookup_in_a_model_folder(model_dir, tmp_path):
    folder = _export_tiny(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="colorization export"):
        Colorizer.from_pretrained(folder, backend="onnx")
    export_onnx(load_exported(folder), folder / "model.onnx")
    c = Colorizer.from_pretrained(folder, backend="onnx")
    assert c.backend.name == "onnx" and isinstance(c.backend, Backend)  # the same protocol as torch


def test_cuda_without_the_gpu_provider_is_an_error_not_a_fallback(model_dir, onnx_file):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed")
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        Colorizer.from_pretrained(onnx_file, backend="onnx", device="cuda")


def test_foreign_onnx_file_is_refused(tmp_path):
    plain = torch.nn.Conv2d(1, 2, 3, padding=1)
    path = tmp_path / "plain.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(plain, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False, input_names=[INPUT_NAME])
    with pytest.raises(ValueError, match="colorization export"):
        OnnxBackend(path)


def test_default_export_needs_only_the_l_input(hint_model_dir, tmp_path):
    """A hint-aware model exports without the hint input unless asked: plain ONNX Runtime use with
    ``{"l_norm": x}`` alone works and equals the model without hints."""
    import onnxruntime as ort

    model = load_exported(hint_model_dir)
    plain = export_onnx(model, tmp_path / "plain.onnx")
    session = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    x = torch.rand(2, 1, 64, 96, generator=torch.Generator().manual_seed(3)) * 2 - 1
    (got,) = session.run(None, {INPUT_NAME: x.numpy()})
    with torch.inference_mode():
        ref = model(x).numpy()
    assert np.abs(got - ref).max() < 1e-4
    colorizer = Colorizer.from_pretrained(plain, backend="onnx")
    assert not colorizer.accepts_hints
    with pytest.raises(ValueError, match="does not take colour hints"):
        colorizer(Image.new("L", (64, 64), 128), hints=["5,5,#ff0000"])

    with_hints = tmp_path / "hints.onnx"
    result = runner.invoke(cli.app, ["export", "--model", str(hint_model_dir), "--out", str(with_hints), "--hints"])
    assert result.exit_code == 0, result.output
    assert "inputs l_norm, hints" in result.output
    assert [i.name for i in OnnxBackend(with_hints).session.get_inputs()] == [INPUT_NAME, HINTS_NAME]


def test_hints_for_an_onnx_file_exported_without_them_say_to_reexport(hint_model_dir, tmp_path):
    """#31: the model was trained with hints, only its export left the hint input out; the message
    said "trained without them" and pointed at another model instead of `colorization export --hints`."""
    plain = export_onnx(load_exported(hint_model_dir), tmp_path / "plain.onnx")
    photo = tmp_path / "gray.png"
    Image.new("L", (64, 48), 120).save(photo)
    result = runner.invoke(cli.app, [
        "colorize", str(photo), "-o", str(tmp_path / "out"), "--backend", "onnx", "--model", str(plain),
        "--hint", "10,10,#2e86c1",
    ])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.replace("\u2502", " ").split())  # the usage-error box wraps lines
    assert "colorization export" in text and "--hints" in text and "exported without its hint input" in text
    assert "trained without them" not in text
    assert not (tmp_path / "out").exists()
    # the API says the same
    colorizer = Colorizer.from_pretrained(plain, backend="onnx")
    with pytest.raises(ValueError, match="re-export it with `colorization export .*--hints`"):
        colorizer(Image.open(photo), hints=["5,5,#ff0000"])
    # a model trained without hints still says so
    no_hints = Colorizer.from_pretrained(export_onnx(load_exported(_export_tiny(tmp_path / "m")), tmp_path / "m.onnx"),
                                         backend="onnx")
    assert "trained without them" in no_hints.no_hints_reason


def test_hints_export_of_a_model_without_hints_is_a_usage_error(model_dir, tmp_path):
    out = tmp_path / "x.onnx"
    result = runner.invoke(cli.app, ["export", "--model", str(model_dir), "--out", str(out), "--hints"])
    assert result.exit_code == 2 and "does not take colour hints" in result.output
    assert not out.exists()


def _doc_section(title: str) -> str:
    text = (Path(__file__).resolve().parents[1] / "docs" / "colorize.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_the_docs_onnx_runtime_snippet_runs_as_written(tmp_path, monkeypatch):
    """docs/colorize.md, section ONNX: its export commands, then its plain ONNX Runtime snippet for
    both files (without and with the hint input), run as written on the shipped model."""
    section = _doc_section("ONNX")
    lines = [line for line in section.splitlines() if line.startswith("colorization export")]
    commands = [line.split("  #", 1)[0].split() for line in lines]
    assert len(commands) == 2 and any("--hints" in c for c in commands)
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", section, re.S) if "InferenceSession" in block)
    monkeypatch.chdir(tmp_path)
    Image.open(Path(__file__).resolve().parents[1] / "examples" / "astronaut_gray.jpg").save("photo.jpg")
    for command in commands:
        result = runner.invoke(cli.app, command[1:])
        assert result.exit_code == 0, result.output
    exec(compile(snippet, "docs/colorize.md", "exec"), {})  # noqa: S102 - the documented code itself
    out = Image.open("photo_color.png")
    assert out.size == (256, 192) and out.mode == "RGB"
    assert np.asarray(out.convert("HSV"))[..., 1].mean() > 5  # coloured, not gray
