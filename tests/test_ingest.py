"""Building training sets: hashes, near-duplicate search, recipes, folder and git sources, the CLI."""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from colorization.cli import app
from colorization.ingest import (
    HashIndex,
    SourceError,
    build_dataset,
    dhash,
    load_recipe,
    min_distances,
    read_hash_list,
    recipe_from_dict,
)
from colorization.ingest.recipe import glob_to_regex


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("COLORIZATION_CACHE_DIR", str(tmp_path / "cache"))


def photo(seed: int, size: tuple[int, int] = (160, 120), gray: bool = False) -> Image.Image:
    """A textured colour (or gray) test photo, different for every seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    chans = []
    for _ in range(3):
        f = rng.uniform(0.5, 2.5, size=2)
        p = rng.uniform(0, 6.3, size=2)
        chans.append(np.sin(f[0] * 6.3 * xx + p[0]) * np.cos(f[1] * 6.3 * yy + p[1]))
    arr = np.stack(chans, -1)
    if gray:
        arr = np.repeat(arr.mean(-1, keepdims=True), 3, -1)
    return Image.fromarray(((arr + 1) * 127.5).clip(0, 255).astype(np.uint8))


def reference_dhash(img: Image.Image) -> int:
    """The evaluation blocklist's definition, written out bit by bit."""
    a = np.asarray(img.convert("RGB").convert("L").resize((9, 8), Image.BILINEAR), dtype=np.int16)
    return int("".join("1" if a[r, c + 1] > a[r, c] else "0" for r in range(8) for c in range(8)), 2)


def test_dhash_matches_the_blocklist_definition():
    for seed in range(5):
        img = photo(seed)
        assert dhash(img) == reference_dhash(img)
        assert 0 <= dhash(img) < 2**64
    # a rescaled, re-encoded copy stays close; another photo does not
    a = photo(1)
    b = a.resize((80, 60), Image.BILINEAR)
    assert (dhash(a) ^ dhash(b)).bit_count() <= 6
    assert (dhash(a) ^ dhash(photo(2))).bit_count() > 10


@pytest.mark.parametrize("distance", [0, 3, 6])
def test_hash_index_finds_exactly_the_near_hashes(distance):
    rng = random.Random(distance)
    stored = [rng.getrandbits(64) for _ in range(3000)]
    for i in range(0, 3000, 7):  # plant near neighbours
        stored[i] = stored[i - 1] ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64))
    index = HashIndex(distance)
    for i, h in enumerate(stored):
        index.add(h, i)
    for q in stored[::50] + [rng.getrandbits(64) for _ in range(20)]:
        expect = sorted(i for i, h in enumerate(stored) if (h ^ q).bit_count() <= distance)
        assert sorted(p for _, p in index.query(q)) == expect
    with pytest.raises(ValueError):
        HashIndex(16)


def test_min_distances_brute_force():
    rng = np.random.default_rng(0)
    hashes = [int(x) for x in rng.integers(0, 2**63, size=200, dtype=np.int64)]
    ref = [int(x) for x in rng.integers(0, 2**63, size=30, dtype=np.int64)] + [hashes[5] ^ 0b101]
    got = min_distances(hashes, ref)
    assert got.tolist() == [min((h ^ r).bit_count() for r in ref) for h in hashes]
    assert got[5] == 2
    assert min_distances(hashes[:3], []).tolist() == [64, 64, 64]


def test_glob_patterns():
    rx = glob_to_regex("train/*/images/*.JPEG")
    assert rx.match("train/n01/images/a.JPEG") and not rx.match("train/n01/x/images/a.JPEG")
    assert glob_to_regex("dataset/**/*.jpg").match("dataset/a/b/c.jpg")
    assert glob_to_regex("dataset/**/*.jpg").match("dataset/c.jpg")
    assert glob_to_regex("**/aug_*").match("data/flowers/rose/aug_1.jpg")
    assert not glob_to_regex("*.jpg").match("a/b.jpg")
    with pytest.raises(ValueError, match="unclosed"):
        glob_to_regex("a[bc")


def test_recipe_validation(tmp_path):
    ok = {"name": "x", "sources": [{"group": "g", "folder": "f"}]}
    assert recipe_from_dict(ok).sources[0].include == ("**",)
    bad = [
        ({"name": "x", "sources": []}, "at least one source"),
        ({"name": "x", "sources": [{"group": "g"}]}, "exactly one of repo"),
        ({"name": "x", "sources": [{"group": "g", "repo": "a/b"}]}, "commit"),
        ({"name": "x", "sources": [{"group": "g/h", "folder": "f"}]}, "folder name"),
        ({"name": "x", "sources": [{"group": "g", "folder": "f", "label": "n\\d+"}]}, "one group"),
        ({"name": "x", "sources": [{"group": "g", "folder": "f", "colour": 1}]}, "unknown field"),
        ({"name": "x", "sources": [{"group": "g", "folder": "f"}, {"group": "g", "folder": "h"}]}, "unique"),
        ({**ok, "against": [{"path": "v", "kind": "test"}]}, "kind"),
        ({**ok, "format": "gif"}, "format"),
    ]
    for raw, match in bad:
        with pytest.raises(ValueError, match=match):
            recipe_from_dict(raw)
    hashes = tmp_path / "h.txt"
    hashes.write_text("# comment\n00ff00ff00ff00ff\n\nzz\n")
    with pytest.raises(ValueError, match=":4: not a hexadecimal"):
        read_hash_list(str(hashes))


@pytest.fixture
def sources(tmp_path):
    """Two source folders and an evaluation folder with planted problems."""
    a, b, ev = tmp_path / "src_a", tmp_path / "src_b", tmp_path / "eval"
    for d in (a / "cat", a / "dog", b, ev):
        d.mkdir(parents=True)
    for i in range(6):
        photo(i).save(a / ("cat" if i % 2 else "dog") / f"img_{i}.jpg", quality=92)
    photo(0).resize((200, 150)).save(a / "dog" / "img_copy.png")   # duplicate of img_0 within the source
    photo(10, gray=True).save(a / "cat" / "img_gray.jpg")          # grayscale
    photo(11, size=(40, 30)).save(a / "cat" / "img_small.jpg")     # too small
    (a / "cat" / "img_broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    photo(20).save(ev / "eval_photo.jpg")
    photo(20).resize((120, 90)).save(b / "leak.jpg")               # an evaluation photo, rescaled
    photo(21).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(b / "mirrored_leak.jpg")
    photo(21).save(ev / "eval_photo2.jpg")
    photo(3).save(b / "from_a.jpg")                                 # duplicate across sources
    photo(30).save(b / "blocked.jpg")
    photo(31).save(b / "fine.jpg")
    photo(32).save(b / "ILSVRC2012_val_00000001.JPEG")
    blocklist = tmp_path / "block.txt"
    blocklist.write_text(f"{dhash(photo(30)):016x}\n")
    return a, b, ev, blocklist


def recipe_for(a: Path, b: Path, ev: Path, blocklist: Path, out: Path, **kw):
    raw = {
        "name": "test", "out": str(out), "short_side": 64, "min_short_side": 32,
        "against": [{"path": str(ev), "kind": "evaluation"}], "blocklists": [str(blocklist)],
        "sources": [
            {"group": "pets", "folder": str(a), "label": "^(cat|dog)/", "licence": "CC0"},
            {"group": "misc", "folder": str(b)},
        ],
    }
    raw.update(kw)
    return recipe_from_dict(raw)


def test_build_from_folders(sources, tmp_path):
    a, b, ev, blocklist = sources
    out = tmp_path / "built"
    recipe = recipe_for(a, b, ev, blocklist, out)
    report = build_dataset(recipe, repos=(), workers=1, progress=False)
    groups = {g.group: g for g in report.groups}
    pets, misc = groups["pets"], groups["misc"]
    assert pets.files == 10 and pets.kept == 6
    assert pets.dropped == {"undecodable": 1, "too_small": 1, "grayscale": 1, "duplicate": 1}
    assert misc.files == 5  # the ILSVRC2012_val_* file is never listed
    assert misc.dropped == {"evaluation": 2, "blocklist": 1, "duplicate": 1} and misc.kept == 1
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert len(rows) == 7 and not (tmp_path / "built.partial").exists()
    for row in rows:
        img = Image.open(out / row["path"])
        assert min(img.size) == 64 and img.format == "WEBP"
        assert row["path"].startswith(row["group"] + "/")
    assert {r["label"] for r in rows if r["group"] == "pets"} == {"cat", "dog"}
    assert all(Path(r["path"]).name.startswith(r["label"] + "_") for r in rows if r["group"] == "pets")
    saved = json.loads((out / "report.json").read_text())
    assert saved["kept"] == 7 and saved["groups"][0]["licence"] == "CC0"
    # the same recipe again: nothing to do; another recipe needs force
    mtime = (out / "manifest.csv").stat().st_mtime_ns
    assert build_dataset(recipe, workers=1, progress=False).kept == 7
    assert (out / "manifest.csv").stat().st_mtime_ns == mtime
    with pytest.raises(FileExistsError):
        build_dataset(recipe_for(a, b, ev, blocklist, out, quality=50), workers=1, progress=False)


def test_build_reuses_finished_groups_when_a_source_is_added(sources, tmp_path):
    a, b, ev, blocklist = sources
    out = tmp_path / "built"
    build_dataset(recipe_for(a, b, ev, blocklist, out), workers=1, progress=False)
    kept_before = {p.name: p.stat().st_mtime_ns for p in (out / "pets").iterdir()}
    extra = tmp_path / "src_c"
    extra.mkdir()
    photo(40).save(extra / "new.jpg")
    photo(2).save(extra / "again.jpg")
    raw_sources = [{"group": "pets", "folder": str(a), "label": "^(cat|dog)/", "licence": "CC0"},
                   {"group": "misc", "folder": str(b)}, {"group": "more", "folder": str(extra)}]
    report = build_dataset(recipe_for(a, b, ev, blocklist, out, sources=raw_sources), workers=1, progress=False,
                           force=True)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "pets").iterdir()} == kept_before  # not rebuilt
    more = report.groups[2]
    assert more.kept == 1 and more.dropped == {"duplicate": 1}


def test_build_from_a_git_repository(tmp_path):
    work = tmp_path / "clone"
    (work / "photos").mkdir(parents=True)
    for i in range(3):
        photo(50 + i).save(work / "photos" / f"p{i}.jpg")
    (work / "README.md").write_text("not a photo")
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "photos"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([*git, "rm", "-q", "photos/p0.jpg"], check=True)
    subprocess.run([*git, "commit", "-qm", "later"], check=True)
    repos = tmp_path / "repos"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(repos / "someone+photos")], check=True)
    raw = {"name": "g", "short_side": 64, "min_short_side": 32,
           "sources": [{"group": "gitphotos", "repo": "someone/photos", "commit": commit, "include": ["photos/*.jpg"]}]}
    report = build_dataset(recipe_from_dict(raw), tmp_path / "out", repos=[repos], workers=1, progress=False)
    assert report.groups[0].kept == 3  # read at the commit, where p0 still exists
    with pytest.raises(SourceError, match="git clone --bare"):
        build_dataset(recipe_from_dict(raw), tmp_path / "out2", repos=[tmp_path / "nowhere"], workers=1,
                      progress=False)


def test_cli_build_and_errors(sources, tmp_path):
    a, b, ev, blocklist = sources
    recipe = recipe_for(a, b, ev, blocklist, tmp_path / "cli_out")
    path = tmp_path / "recipe.json"
    import dataclasses
    path.write_text(json.dumps(dataclasses.asdict(recipe)))
    assert load_recipe(path) == recipe
    runner = CliRunner()
    result = runner.invoke(app, ["data", "build", str(path), "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "| pets |" in result.output and "7 photos kept" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsources: [{group: g}]\n")
    result = runner.invoke(app, ["data", "build", str(bad)])
    assert result.exit_code == 2 and "exactly one of repo" in result.output
    shutil.rmtree(a)
    result = runner.invoke(app, ["data", "build", str(path), "--out", str(tmp_path / "o3"), "--no-progress"])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_shipped_recipes_load():
    folder = Path(__file__).resolve().parents[1] / "configs" / "data"
    recipes = sorted(folder.glob("*.yaml"))
    assert recipes
    for path in recipes:
        recipe = load_recipe(path)
        assert recipe.sources and all(s.repo is None or len(s.commit) == 40 for s in recipe.sources)
