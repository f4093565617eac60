"""DistributedDataParallel training: 2 CPU processes (gloo) under torchrun hold identical weights."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp
from PIL import Image


def _rank_main(local_rank: int, world: int, port: int, cfg_path: str, cache: str) -> None:
    """One training process, initialised the way torchrun does it: from environment variables."""
    os.environ.update({
        "RANK": str(local_rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "COLORIZATION_CACHE_DIR": cache,
    })
    torch.set_num_threads(1)
    import torch.distributed as dist

    from colorization.train import resolve_config, train

    cfg = resolve_config(json.loads(Path(cfg_path).read_text()))
    result = train(cfg, progress=False)
    params = dict(result.objective.named_parameters())
    h = hashlib.sha256()
    for k in sorted(params):
        h.update(k.encode())
        h.update(params[k].detach().cpu().numpy().tobytes())
    Path(cfg.out, f"rank{local_rank}.json").write_text(json.dumps({
        "rank": local_rank,
        "world": result.world_size,
        "backend": result.backend,
        "group_destroyed": not dist.is_initialized(),
        "step": result.step,
        "finished": result.finished,
        "params_sha256": h.hexdigest(),
    }))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_images(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        yy, xx = np.mgrid[0:40, 0:44] / 44.0
        c = rng.random((3, 3))
        img = np.stack([c[k, 0] * xx + c[k, 1] * yy + c[k, 2] * (1 - xx) for k in range(3)], -1)
        Image.fromarray((255 * img / img.max()).astype(np.uint8)).save(folder / f"img_{i}.png")
    return folder


def test_two_process_gloo_training_keeps_ranks_identical(tmp_path):
    data = make_images(tmp_path / "train", 16)
    out = tmp_path / "out"
    config = {
        "model": "baseline", "model_config": {"width": 8, "depth": 2},
        "objective": "gan", "discriminator_config": {"width": 8, "n_layers": 2},
        "data": [str(data)], "out": str(out), "steps": 4, "batch_size": 2, "crop": 32,
        "workers": 0, "device": "cpu", "log_every": 2, "save_every": 2, "lr": 2e-3,
    }
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(config))
    # two processes with the environment torchrun would give them (RANK, WORLD_SIZE, MASTER_*);
    # `torchrun --nproc_per_node 2 -m colorization.cli train ...` runs the same code path
    mp.start_processes(_rank_main, args=(2, _free_port(), str(cfg_path), str(tmp_path / "cache")),
                       nprocs=2, join=True, start_method="spawn")

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and ranks[0]["backend"] == "gloo"
    assert all(r["group_destroyed"] for r in ranks)  # train() cleans up the group it created
    assert all(r["step"] == 4 and r["finished"] for r in ranks)
    assert ranks[0]["params_sha256"] == ranks[1]["params_sha256"]

    # training moved the weights away from the seeded initialisation (the trainer seeds with cfg.seed)
    from colorization.inference import checkpoint
    from colorization.models import create_model
    from colorization.train import resolve_config

    torch.manual_seed(0)
    init = create_model("baseline", **resolve_config(config).model_config)
    exported = checkpoint.load_exported(out / "model").network
    moved = [not torch.equal(a, b) for a, b in zip(exported.parameters(), init.parameters())]
    assert sum(moved) > len(moved) // 2

    # rank 0 alone wrote the log and the state; every step's global batch was 2 x 2 images
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[0]["kind"] == "start" and log[0]["world_size"] == 2
    train_lines = [r for r in log if r["kind"] == "train"]
    assert [r["step"] for r in train_lines] == [2, 4]
    assert train_lines[-1]["images_seen"] == 4 * 2 * 2
    assert {"discriminator/loss", "generator/loss", "generator/l1"} <= set(train_lines[-1])
    latest = json.loads((out / "state" / "latest.json").read_text())
    step_dir = out / "state" / latest["dir"]
    assert (step_dir / "rng_rank0.safetensors").is_file() and (step_dir / "rng_rank1.safetensors").is_file()
