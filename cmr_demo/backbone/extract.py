"""Feature extraction as its own stage, on one process or many (torchrun): it fills the feature cache.

    python -m cmr_demo.backbone.extract --data SPEC --backbone SPEC [--device cuda --precision bf16]
    torchrun --nproc_per_node 8 -m cmr_demo.backbone.extract --data SPEC --backbone SPEC --device cuda --precision bf16
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_endpoint HOST:29500 -m cmr_demo.backbone.extract ...   (several
    machines)

Why: extraction is the only stage that grows with the data; heads train in seconds. Every rank encodes
a strided shard (rank, rank + world, ...) of each split, the shards are gathered on rank 0, and rank 0
writes the cache entry exactly as a single process would (same key, same order), so `cmr_demo.train`
and `cmr_demo.bundle` then read it without loading the backbone. The process group is gloo by default on
CPU and GPU alike: only the finished feature shards travel (a few KB per item), as Python objects.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist

from cmr_demo.cliargs import HelpFormatter
from cmr_demo.data import data_spec_help, load_data
from cmr_demo.backbone.features import cache_path, default_cache_dir, encode, save_cache


def _world() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _gather(shard: tuple[np.ndarray, np.ndarray], world: int) -> list:
    if world == 1:
        return [shard]
    out: list = [None] * world
    dist.all_gather_object(out, shard)
    return out


def _interleave(shards: list, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Shards of rows rank::world back into the original order."""
    world = len(shards)
    image = np.empty((n, shards[0][0].shape[1]), np.float32)
    text = np.empty((n, shards[0][1].shape[1]), np.float32)
    for rank, (img, txt) in enumerate(shards):
        image[rank::world], text[rank::world] = img, txt
    return image, text


def extract(data: str, backbone: str, device: str = "cpu", precision: str = "fp32", cache_dir=None,
            batch_size: int = 64, num_workers: int = 0, progress: bool = True) -> dict[str, str]:
    """Encode every split (this rank's shard of it) and write the cache on rank 0; returns {split: status}."""
    from cmr_demo.backbone.clip import load_backbone, parse_backbone_spec
    rank, world, _ = _world()
    spec = parse_backbone_spec(backbone).text
    cache_dir = cache_dir or default_cache_dir()
    dataset = load_data(data)
    model, status = None, {}
    for name, split in dataset.splits().items():
        path = cache_path(split, spec, cache_dir)
        if path.is_file():  # every rank sees the same file system state here: all skip together
            status[name] = "cached"
            continue
        model = model or load_backbone(spec, device=device, precision=precision)
        rows = list(range(rank, len(split), world))
        shard = encode(model, [split.images[i] for i in rows], [split.texts[i] for i in rows], batch_size,
                       num_workers, progress and rank == 0)
        shards = _gather(shard, world)
        if rank == 0:
            save_cache(path, *_interleave(shards, len(split)), spec)
        status[name] = f"extracted {len(split)} items on {world} process(es)"
        if world > 1:
            dist.barrier()
    return status


def main(argv: Sequence[str] | None = None) -> dict[str, str]:
    p = argparse.ArgumentParser(
        prog="python -m cmr_demo.backbone.extract", description=__doc__, formatter_class=HelpFormatter
    )
    p.add_argument("--data", required=True, help=data_spec_help())
    p.add_argument("--backbone", required=True, help="backbone spec: ARCH:TAG, ARCH:FILE, ARCH:random, "
                                                     "hf-hub:ORG/REPO, "
                   "local-dir:DIR (see cmr_demo.backbone.clip)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda (cuda:RANK "
                                                                                            "under torchrun)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="autocast for the backbone")
    p.add_argument("--batch-size", type=int, default=64, help="images per backbone batch")
    p.add_argument("--num-workers", type=int, default=0, help="image decoding worker processes")
    p.add_argument("--cache-dir", default=None, help="feature cache (default $CMR_CACHE_DIR or "
                                                     "~/.cache/cmr_demo/features)")
    p.add_argument("--backend", default=None, help="process group backend (default gloo, on CPU and GPU: only finished "
                                                   "shards travel)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    rank, world, local = _world()
    device = args.device
    if world > 1:
        # gloo for the object gather: it works on CPU and on GPU machines alike
        dist.init_process_group(args.backend or "gloo")
        if device == "cuda":
            device = f"cuda:{local}"
            torch.cuda.set_device(local)
    try:
        status = extract(args.data, args.backbone, device, args.precision, args.cache_dir, args.batch_size,
                         args.num_workers, not args.quiet)
    finally:
        if world > 1:
            dist.destroy_process_group()
    if rank == 0:
        print("; ".join(f"{k}: {v}" for k, v in status.items()))
    return status


if __name__ == "__main__":
    from cmr_demo.cli import run
    sys.exit(run(main))
