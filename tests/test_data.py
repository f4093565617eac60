"""Tests of colorization.data on tiny generated folders."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image

from colorization import color, data


def _tinted(path: Path, strength: float, size: tuple[int, int] = (24, 20), seed: int = 0) -> None:
    """A grey gradient pushed towards a random colour by ``strength`` (0 = grayscale)."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.linspace(40, 215, w)[None, :, None].repeat(h, 0)
    tint = rng.uniform(-1, 1, (h, w, 3)) * 80 * strength
    arr = np.clip(base + tint, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    _tinted(root / "cat_1.png", 1.0, seed=1)
    _tinted(root / "cat_2.png", 0.8, seed=2)
    _tinted(root / "dog_1.png", 0.6, seed=3)
    _tinted(root / "sub" / "dog_2.png", 0.4, seed=4)
    _tinted(root / "sub" / "bird_1.png", 0.2, seed=5)
    _tinted(root / "sub" / "unlabelled.png", 0.1, seed=6)
    Image.fromarray(np.full((20, 24), 128, np.uint8)).save(root / "sub" / "gray_1.png")
    (root / "readme.txt").write_text("not an image")
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("COLORIZATION_CACHE_DIR", str(cache))
    return cache


def _names(ds: data.ImageFolderDataset, root: Path) -> list[str]:
    return [f.relative_to(root).as_posix() for f in ds.files]


def test_files_labels_and_items(folder: Path) -> None:
    ds = data.ImageFolderDataset([folder], crop=16, train=False, drop_grayscale=False,
                                 with_labels=True, progress=False)
    assert _names(ds, folder) == ["cat_1.png", "cat_2.png", "dog_1.png", "sub/bird_1.png",
                                  "sub/dog_2.png", "sub/gray_1.png", "sub/unlabelled.png"]
    assert ds.class_names == ["bird", "cat", "dog", "gray"]
    assert ds.labels == [1, 1, 2, 0, 2, 3, -1]
    item = ds[3]
    assert item["rgb"].dtype == torch.uint8 and item["rgb"].shape == (3, 16, 16)
    assert item["label"] == 0 and item["index"] == 3
    no_labels = data.ImageFolderDataset(folder, crop=16, drop_grayscale=False, progress=False)
    assert no_labels.class_names == [] and no_labels[0]["label"] == -1


def test_manifest_labels(folder: Path) -> None:
    (folder / "manifest.csv").write_text(
        "split,path,label\ntrain,cat_1.png,feline\ntrain,sub/unlabelled.png,thing\ntrain,dog_1.png,\n"
    )
    ds = data.ImageFolderDataset(folder, crop=8, drop_grayscale=False, with_labels=True, progress=False)
    names = dict(zip(_names(ds, folder), ds.labels))
    cls = ds.class_names
    assert cls[names["cat_1.png"]] == "feline"  # from the manifest
    assert cls[names["sub/unlabelled.png"]] == "thing"
    assert names["dog_1.png"] == -1  # listed without a label: unknown, not the prefix
    assert cls[names["cat_2.png"]] == "cat"  # not listed: file-name prefix


def test_filters_and_cache(folder: Path, _cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = data.ImageFolderDataset(folder, crop=8, drop_grayscale=True, progress=False)
    assert "sub/gray_1.png" not in _names(ds, folder)
    assert ds.filter_stats == {"found": 7, "after_grayscale": 6, "kept": 6}
    cache_files = list(_cache.glob("image-scores-*.json"))
    assert len(cache_files) == 1
    cached = json.loads(cache_files[0].read_text())["scores"]
    assert len(cached) == 7

    # scores match a direct computation on the same thumbnail
    img = Image.open(folder / "cat_1.png").convert("RGB")
    img.thumbnail((data.THUMBNAIL_SIZE, data.THUMBNAIL_SIZE), Image.Resampling.BILINEAR)
    rgb = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 255
    cf, _ = cached[data._content_key(folder / "cat_1.png")]
    assert cf == pytest.approx(float(color.colorfulness(rgb)), abs=1e-3)

    # second time: served from the cache, no image is scored
    def fail(path: str) -> tuple[float, float]:
        raise AssertionError(f"scored {path} again")

    monkeypatch.setattr(data, "_score_one", fail)
    ds = data.ImageFolderDataset(folder, crop=8, drop_grayscale=True,
                                 min_colorfulness_quantile=0.5, progress=False)
    # 6 colour images, the 3 least tinted dropped
    assert _names(ds, folder) == ["cat_1.png", "cat_2.png", "dog_1.png"]
    assert ds.filter_stats["after_colorfulness"] == 3

    # the same photos copied elsewhere, with new modification times: still served from the cache
    copy = folder.parent / "copy"
    shutil.copytree(folder, copy)
    for f in copy.rglob("*.png"):
        os.utime(f, ns=(2, 2))
    moved = data.ImageFolderDataset(copy, crop=8, drop_grayscale=True,
                                    min_colorfulness_quantile=0.5, progress=False)
    assert _names(moved, copy) == ["cat_1.png", "cat_2.png", "dog_1.png"]

    # changing a file's content: that photo (only) is scored again
    _tinted(folder / "cat_1.png", 0.05, seed=1)
    scored: list[str] = []
    monkeypatch.setattr(data, "_score_one", lambda path: (scored.append(path), (1.0, 9.0))[1])
    data.ImageFolderDataset(folder, crop=8, progress=False)
    assert scored == [str(folder / "cat_1.png")]
    assert len(json.loads(cache_files[0].read_text())["scores"]) == 8  # the old entry is kept


def test_max_images_and_errors(folder: Path, tmp_path: Path) -> None:
    a = data.ImageFolderDataset(folder, crop=8, drop_grayscale=False, max_images=3, seed=1, progress=False)
    b = data.ImageFolderDataset(folder, crop=8, drop_grayscale=False, max_images=3, seed=1, progress=False)
    assert len(a) == 3 and a.files == b.files
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        data.ImageFolderDataset(tmp_path / "empty", progress=False)
    with pytest.raises(ValueError, match="quantile"):
        data.ImageFolderDataset(folder, min_colorfulness_quantile=1.0, progress=False)
    only_gray = tmp_path / "g"
    only_gray.mkdir()
    Image.new("RGB", (8, 8), (90, 90, 90)).save(only_gray / "x.png")
    with pytest.raises(ValueError, match="filtered out"):
        data.ImageFolderDataset(only_gray, progress=False)


def test_eval_resize_and_centre_crop(tmp_path: Path) -> None:
    arr = np.zeros((4, 8, 3), dtype=np.uint8)  # 8 wide, 4 high; columns coloured by index
    arr[..., 0] = (np.arange(8) * 30)[None, :]
    arr[..., 1] = (np.arange(4) * 60)[:, None]
    arr[..., 2] = 200
    Image.fromarray(arr).save(tmp_path / "wide.png")
    ds = data.ImageFolderDataset(tmp_path, crop=4, train=False, drop_grayscale=False, progress=False)
    out = ds[0]["rgb"].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out, arr[:, 2:6])  # centre square, already at size
    np.testing.assert_array_equal(ds[0]["rgb"], ds[0]["rgb"])  # deterministic
    ds2 = data.ImageFolderDataset(tmp_path, crop=2, train=False, drop_grayscale=False, progress=False)
    assert ds2[0]["rgb"].shape == (3, 2, 2)


def test_train_augmentation(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "sq.png")
    ds = data.ImageFolderDataset(tmp_path, crop=16, train=True, scale_jitter=(1.0, 1.0),
                                 drop_grayscale=False, progress=False)
    torch.manual_seed(0)
    outs = {tuple(ds[0]["rgb"].permute(1, 2, 0).numpy().ravel()) for _ in range(12)}
    assert outs == {tuple(arr.ravel()), tuple(arr[:, ::-1].ravel())}  # identity or mirror

    Image.fromarray(np.zeros((30, 50, 3), np.uint8)).save(tmp_path / "sq.png")
    ds = data.ImageFolderDataset(tmp_path, crop=8, train=True, scale_jitter=(0.5, 0.75),
                                 drop_grayscale=False, progress=False)
    for _ in range(50):
        x0, y0, x1, y1 = ds._crop_box(50, 30)
        assert 0 <= x0 and x1 <= 50 and 0 <= y0 and y1 <= 30
        assert x1 - x0 == pytest.approx(y1 - y0) and 15 <= x1 - x0 <= 22.5
    assert ds[0]["rgb"].shape == (3, 8, 8)


def test_build_loader_and_batch_to_lab(folder: Path) -> None:
    ds = data.ImageFolderDataset(folder, crop=16, train=True, drop_grayscale=False,
                                 with_labels=True, progress=False)
    order = [b["index"].tolist() for b in data.build_loader(ds, 2, workers=0, seed=3)]
    again = [b["index"].tolist() for b in data.build_loader(ds, 2, workers=0, seed=3)]
    assert order == again and len(order) == 3  # 7 images, drop_last
    flat = sum(order, [])
    assert len(set(flat)) == 6 and set(flat) <= set(range(7))
    loader = data.build_loader(ds, 3, workers=2, shuffle=False, drop_last=False)
    batches = list(loader)
    assert [b["rgb"].shape[0] for b in batches] == [3, 3, 1]
    b = batches[0]
    assert b["rgb"].dtype == torch.uint8 and b["rgb"].shape == (3, 3, 16, 16)
    assert b["label"].dtype == torch.int64 and b["label"].tolist() == ds.labels[:3]
    assert b["index"].tolist() == [0, 1, 2]

    l_norm, ab_norm = data.batch_to_lab(b["rgb"], "cpu")
    assert l_norm.shape == (3, 1, 16, 16) and ab_norm.shape == (3, 2, 16, 16)
    assert l_norm.dtype == torch.float32
    ref_l, ref_ab = color.rgb_to_l_ab(b["rgb"].float() / 255)
    torch.testing.assert_close(l_norm, ref_l)
    torch.testing.assert_close(ab_norm, ref_ab)
    l2, ab2 = data.batch_to_lab(b["rgb"].float() / 255)
    torch.testing.assert_close(l2, ref_l)
    with pytest.raises(ValueError):
        data.batch_to_lab(b["rgb"][:, :2])


def test_distributed_sampler(folder: Path, tmp_path: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ds = data.ImageFolderDataset(folder, crop=8, drop_grayscale=False, progress=False)
        loader = data.build_loader(ds, 2, workers=0, distributed=True, seed=1)
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
        loader.sampler.set_epoch(0)
        first = sum((b["index"].tolist() for b in loader), [])
        loader.sampler.set_epoch(1)
        second = sum((b["index"].tolist() for b in loader), [])
        assert len(first) == len(second) == 6 and sorted(set(first)) == sorted(first)
    finally:
        dist.destroy_process_group()


def test_max_images_scores_only_a_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "many"
    for i in range(60):
        _tinted(root / f"img_{i:02d}.png", 0.2 + 0.01 * i, seed=i, size=(12, 12))
    scored: list[str] = []
    real = data._score_one

    def counting(path: str) -> tuple[float, float]:
        scored.append(path)
        return real(path)

    monkeypatch.setattr(data, "_score_one", counting)
    ds = data.ImageFolderDataset(root, crop=8, min_colorfulness_quantile=0.5, max_images=4,
                                 score_workers=1, progress=False)
    assert len(ds) == 4
    pool = ds.filter_stats["scored_pool"]
    assert len(scored) == pool < 60  # 4 / (0.5 * 0.9) * 1.1 + 16 = 26


def test_groups_and_the_held_out_slice(tmp_path: Path) -> None:
    root = tmp_path / "train"
    for g in ("alpha", "beta"):
        for i in range(40):
            _tinted(root / g / f"img_{i:03d}.png", 1.0, size=(8, 8), seed=i)
    found = __import__("colorization.image_io", fromlist=["find_images"]).find_images([root])
    assert {data.group_of(f, r) for f, r in found} == {"alpha", "beta"}
    assert data.group_of(root / "x.png", root) == "" and data.group_of(root / "a" / "x.png", None) == ""
    held = data.select_files(found, holdout="only")
    rest = data.select_files(found, holdout="exclude")
    assert len(held) + len(rest) == len(found) and not {f for f, _ in held} & {f for f, _ in rest}
    # membership depends on group and name only: the same under another root folder
    moved = tmp_path / "elsewhere"
    for f, _ in found:
        _tinted(moved / f.relative_to(root), 1.0, size=(8, 8))
    assert [data.is_held_out(f, root) for f, _ in found] == [
        data.is_held_out(moved / f.relative_to(root), moved) for f, _ in found]
    # about HOLDOUT_SHARE of many names, in every group
    names = [(Path(f"/d/{g}/{i}.webp"), Path("/d")) for g in ("a", "b") for i in range(4000)]
    for g in ("a", "b"):
        share = np.mean([data.is_held_out(f, r) for f, r in names if data.group_of(f, r) == g])
        assert abs(share - data.HOLDOUT_SHARE) < 0.01
    only_beta = data.ImageFolderDataset([root], crop=8, train=False, drop_grayscale=False, progress=False,
                                        groups=["beta"], holdout="exclude")
    assert set(only_beta.groups) == {"beta"}
    assert len(only_beta) == sum(1 for f, r in rest if data.group_of(f, r) == "beta")
    with pytest.raises(ValueError, match=r"unknown data group\(s\) \['gamma'\].*'alpha', 'beta'"):
        data.ImageFolderDataset([root], groups=["gamma"], progress=False)
    with pytest.raises(ValueError, match="holdout must be one of"):
        data.select_files(found, holdout="skip")
