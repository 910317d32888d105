"""The fit loop: train heads + objective on cached features, select the best epoch, resume exactly.

Why resume is exact: every epoch re-seeds the dropout masks (numpy on CPU, torch on a GPU) and
draws its batch order from (seed, epoch), and the state file holds weights, optimiser moments and
the best weights so far. A run killed anywhere and resumed therefore follows the same path as one
never interrupted; it replays at most the epochs since the last state write. The state is written
every `state_every_s` seconds rather than every epoch: at ~10 MB for the paper's heads, writing it
after each of Wikipedia's ~100 ms epochs was a tenth of the run. The
state is one safetensors file whose metadata holds the JSON bookkeeping, written atomically, so
weights and bookkeeping can never come from two different epochs.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cmr_demo.files import CheckpointError, load_tensors, save_tensors
from cmr_demo.train.heads import HeadConfig, Heads
from cmr_demo.train.objectives import build_objective, option_defaults
from cmr_demo.metrics import average_precision
from cmr_demo.sampling import seeded_rows

STATE_FORMAT = "cmr_demo.train-state/1"
SELECT_ON = ("val", "test")


@dataclass
class TrainConfig:
    objective: str = field(default="pcl", metadata={"help": "the paper's final model"})
    epochs: int = field(default=500, metadata={"help": "the paper's cap; early stopping ends runs long before"})
    batch_size: int = field(default=300, metadata={"help": "the paper's"})
    lr: float = field(default=1e-4, metadata={"help": "the paper's Adam learning rate"})
    beta1: float = field(default=0.5, metadata={"help": "the paper's Adam betas are (0.5, 0.999)"})
    beta2: float = field(default=0.999, metadata={"help": "Adam's second beta"})
    patience: int = field(default=10, metadata={"help": "epochs without a better selection mAP before stopping (the "
                                                        "paper's)"})
    seed: int = field(default=0, metadata={"help": "initialisation, batch order and dropout masks"})
    select_on: str = field(default="val", metadata={
        "help": "split that selects the epoch: val, or test = the official code's protocol (optimistic)",
        "choices": SELECT_ON})
    text_fraction: float = field(default=1.0, metadata={"help": "share of training pairs that keep their text "
                                                                "(modality imbalance)"})
    image_fraction: float = field(default=1.0, metadata={"help": "share of training pairs that keep their image (the "
                                                                 "mirror case)"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    precision: str = field(default="fp32", metadata={"help": "autocast for the heads: bf16, or fp16 on CUDA only",
                                                      "choices": ("fp32", "bf16", "fp16")})
    objective_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Settings that cannot train are refused before anything is read or trained, naming the valid range."""
        checks = [("epochs", self.epochs, self.epochs >= 1, ">= 1"),
                  ("batch_size", self.batch_size, self.batch_size >= 1, ">= 1"),
                  ("lr", self.lr, math.isfinite(self.lr) and self.lr > 0, "a finite number > 0"),
                  ("beta1", self.beta1, 0 <= self.beta1 < 1, "in [0, 1)"),
                  ("beta2", self.beta2, 0 <= self.beta2 < 1, "in [0, 1)"),
                  ("patience", self.patience, self.patience >= 1, ">= 1"),
                  ("text_fraction", self.text_fraction, 0 < self.text_fraction <= 1, "in (0, 1]"),
                  ("image_fraction", self.image_fraction, 0 < self.image_fraction <= 1, "in (0, 1]")]
        for name, value, ok, valid in checks:
            if not ok:
                raise ValueError(f"{name} must be {valid}; got {value}")


class Diverged(ValueError):
    """Training produced a non-finite loss: the run stops instead of saving NaN weights."""


@dataclass
class Tensors:
    """Features and labels of one split on the training device."""
    image: torch.Tensor  # [N, d_img]
    text: torch.Tensor  # [N, d_txt]
    labels: torch.Tensor  # [N] int64

    @classmethod
    def of(cls, image: np.ndarray, text: np.ndarray, labels: np.ndarray, device) -> "Tensors":
        as_t = lambda a, dt: torch.as_tensor(np.asarray(a), dtype=dt, device=device)  # noqa: E731
        return cls(as_t(image, torch.float32), as_t(text, torch.float32), as_t(labels, torch.int64))


@dataclass
class FitResult:
    heads: Heads
    objective: torch.nn.Module
    history: list[dict]
    best_epoch: int
    best_score: float
    seconds: float


def modality_masks(n: int, cfg: TrainConfig) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Seeded keep-masks for the imbalance setting (None = keep every item of that modality)."""
    rng = np.random.default_rng(cfg.seed + 7919)
    masks = []
    for frac in (cfg.image_fraction, cfg.text_fraction):
        if not 0.0 < frac <= 1.0:
            raise ValueError(f"modality fractions must be in (0, 1]; got {frac}")
        keep = np.zeros(n, bool)
        keep[rng.choice(n, size=max(1, round(frac * n)), replace=False)] = True
        masks.append(None if frac == 1.0 else torch.from_numpy(keep))
    return masks[0], masks[1]


SELECTION_QUERIES = 2000  # queries per direction for the per-epoch selection mAP of a larger validation split


def selection_queries(n: int, limit: int = SELECTION_QUERIES) -> torch.Tensor | None:
    """Which validation items are queries when the epoch is selected: all of them (None) up to `limit`, else a
    fixed seeded sample of `limit`.

    Why: mAP@all costs queries x gallery; on all of a 25,000-item split that is 35 s per direction and epoch.
    Each sampled query is still ranked against the whole split, so its AP is exact and their mean estimates
    mAP@all without bias (standard error ~ std(AP)/sqrt(2000), about 0.005); the same queries every epoch make
    epoch-to-epoch comparisons paired, so the choice of epoch is steadier still. Test metrics stay exact."""
    rows = seeded_rows(n, limit, 20221109)
    return None if rows is None else torch.from_numpy(rows)


@torch.no_grad()
def selection_map(heads: Heads, data: Tensors) -> tuple[float, float]:
    heads.eval()
    img, txt = heads.encode_image(data.image), heads.encode_text(data.text)
    q = selection_queries(len(data.labels))
    pick = (lambda x: x) if q is None else (lambda x: x[q.to(x.device)])
    i2t = float(average_precision(pick(img), pick(data.labels), txt, data.labels).mean())
    t2i = float(average_precision(pick(txt), pick(data.labels), img, data.labels).mean())
    return i2t, t2i


def _state_tensors(heads, objective, optimizer, best) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in heads.state_dict().items()}
    out.update({f"objective.{k}": v for k, v in objective.state_dict().items()})
    out.update({f"best.{k}": v for k, v in best.items()})
    for i, st in optimizer.state_dict()["state"].items():
        out.update({f"optim.{i}.{k}": torch.as_tensor(v) for k, v in st.items()})
    return out


def _restore(path: Path, heads, objective, optimizer, cfg_json: str) -> tuple[dict, dict]:
    tensors, meta = load_tensors(path)
    if meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a training state file")
    if meta["train_config"] != cfg_json:
        raise CheckpointError(f"{path} belongs to a run with other settings:\n  saved: {meta['train_config']}"
                              f"\n  now:   {cfg_json}\nuse another --out or the same settings to resume")
    pick = lambda p: {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}  # noqa: E731
    heads.load_state_dict(pick("model."))
    objective.load_state_dict(pick("objective."))
    groups = json.loads(meta["param_groups"])
    per_param: dict[int, dict] = {}
    for k, v in pick("optim.").items():
        i, name = k.split(".", 1)
        per_param.setdefault(int(i), {})[name] = v
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    return json.loads(meta["progress"]), pick("best.")


def fit(cfg: TrainConfig, head_cfg: HeadConfig, num_classes: int, train: Tensors, select: Tensors,
        state_path: Path | None = None, log: Callable[[str], None] = print, progress: bool = True,
        state_every_s: float = 2.0, on_epoch: Callable[[dict], object] | None = None,
        interrupt: Callable[[], bool] | None = None) -> FitResult:
    """Train until early stopping; keep the weights of the epoch with the best selection mAP.

    With `state_path`, a resume state is written when `state_every_s` seconds have passed since the
    last one (0: after every epoch). `on_epoch` sees each epoch's history row as it is written (the
    app's live curve). `interrupt` is asked before every batch: True ends the run there (a Stop, a time
    cap); the epoch under way is dropped with its partial update, and the best epoch so far is kept, as at
    early stopping."""
    device = train.image.device
    torch.manual_seed(cfg.seed)
    heads = Heads(head_cfg).to(device)
    image_mask, text_mask = (m if m is None else m.to(device) for m in modality_masks(len(train.labels), cfg))
    heads.fit_standardization(*kept_rows(train, image_mask, text_mask))
    objective = build_objective(cfg.objective, num_classes, head_cfg.embed_dim, seeded_options(cfg)).to(device)
    params = list(heads.parameters()) + list(objective.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    cfg_json = json.dumps(asdict(cfg), sort_keys=True)
    run_state = {"epoch": -1, "best_epoch": -1, "best_score": -math.inf, "bad_epochs": 0, "history": [], "seconds": 0.0}
    best = {k: v.clone() for k, v in _module_state(heads, objective).items()}
    if state_path is not None and state_path.is_file():
        run_state, best = _restore(state_path, heads, objective, optimizer, cfg_json)
        log(f"resuming {cfg.objective} after epoch {run_state['epoch'] + 1} (best so far: epoch "
            f"{run_state['best_epoch'] + 1}, selection mAP {run_state['best_score']:.4f})")
    start, last_write = time.perf_counter() - run_state["seconds"], time.perf_counter()
    from tqdm.auto import trange
    bar = trange(run_state["epoch"] + 1, cfg.epochs, desc=cfg.objective, unit="epoch", disable=not progress,
                 leave=False)
    for epoch in bar:
        if run_state["bad_epochs"] >= cfg.patience:
            break
        losses = _train_epoch(cfg, epoch, heads, objective, optimizer, scaler, amp_dtype, train, image_mask, text_mask,
                              interrupt)
        if losses is None:  # interrupted mid-epoch
            break
        i2t, t2i = selection_map(heads, select)
        score = (i2t + t2i) / 2
        improved = score > run_state["best_score"]
        if improved:
            run_state.update(best_epoch=epoch, best_score=score, bad_epochs=0)
            best = {k: v.detach().clone() for k, v in _module_state(heads, objective).items()}
        else:
            run_state["bad_epochs"] += 1
        run_state["history"].append({"epoch": epoch + 1, **losses, f"{cfg.select_on}_i2t_map": i2t,
                                     f"{cfg.select_on}_t2i_map": t2i, f"{cfg.select_on}_avg_map": score,
                                     "improved": int(improved), "seconds": round(time.perf_counter() - start, 3)})
        run_state["epoch"], run_state["seconds"] = epoch, time.perf_counter() - start
        bar.set_postfix(loss=f"{losses['loss']:.4f}", sel_map=f"{score:.4f}", best=f"{run_state['best_score']:.4f}")
        if on_epoch is not None:
            on_epoch(run_state["history"][-1])
        if state_path is not None and time.perf_counter() - last_write >= state_every_s:
            _write_state(state_path, cfg_json, run_state, heads, objective, optimizer, best)
            last_write = time.perf_counter()
    _load_module_state(heads, objective, best)
    return FitResult(heads.eval(), objective.eval(), run_state["history"], run_state["best_epoch"] + 1,
                     run_state["best_score"], time.perf_counter() - start)


def kept_rows(train: Tensors, image_mask, text_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """The image and text features that train (imbalance: a withheld text must not shape the text head's inputs,
    so the standardisation statistics come from these)."""
    keep = lambda x, m: x if m is None or int(m.sum()) < 2 else x[m]  # noqa: E731 (one row has no spread: all rows)
    return keep(train.image, image_mask), keep(train.text, text_mask)


def seeded_options(cfg: TrainConfig) -> dict[str, float]:
    """The run's objective options, with a random draw the objective owns (pcl's prototypes) following the training
    seed unless the options fix it: a spread over seeds then includes that draw's randomness too."""
    options = dict(cfg.objective_options)
    if "prototype_seed" in option_defaults(cfg.objective) and "prototype_seed" not in options:
        options["prototype_seed"] = float(cfg.seed)
    return options


def _write_state(path: Path, cfg_json: str, run_state: dict, heads, objective, optimizer, best: dict) -> None:
    """The resume state: weights, optimiser moments, the best weights so far and the bookkeeping, in one file."""
    meta = {"format": STATE_FORMAT, "train_config": cfg_json, "progress": json.dumps(run_state),
            "param_groups": json.dumps(optimizer.state_dict()["param_groups"])}
    save_tensors(path, _state_tensors(heads, objective, optimizer, best), meta)


def _module_state(heads, objective) -> dict[str, torch.Tensor]:
    out = {f"heads.{k}": v for k, v in heads.state_dict().items()}
    out.update({f"objective.{k}": v for k, v in objective.state_dict().items()})
    return out


def _load_module_state(heads, objective, state) -> None:
    heads.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("heads.")})
    objective.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("objective.")})


def _train_epoch(cfg, epoch, heads, objective, optimizer, scaler, amp_dtype, train, image_mask, text_mask,
                 interrupt: Callable[[], bool] | None = None) -> dict | None:
    """One pass over the training pairs in a (seed, epoch)-determined order; returns mean loss terms (None
    when `interrupt` said stop before a batch)."""
    epoch_seed = cfg.seed * 1_000_003 + epoch
    torch.manual_seed(epoch_seed)  # dropout masks on a GPU
    heads.reseed_dropout(epoch_seed)  # dropout masks on the CPU
    order = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(epoch_seed))
    heads.train()
    objective.train()
    sums: dict[str, torch.Tensor] = {}
    for idx in order.to(train.labels.device).split(cfg.batch_size):
        if interrupt is not None and interrupt():
            return None
        with torch.autocast(train.image.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = objective(heads.encode_image(train.image[idx]), heads.encode_text(train.text[idx]),
                            train.labels[idx], None if image_mask is None else image_mask[idx],
                            None if text_mask is None else text_mask[idx])
        if not torch.isfinite(out["loss"]):
            raise Diverged(f"{cfg.objective} diverged in epoch {epoch + 1} (loss {float(out['loss'])}): its weights "
                           f"would be NaN. Lower the learning rate ({cfg.lr:g}) or the objective's options "
                           f"({cfg.objective_options or 'defaults'}), e.g. a smaller scale or weight")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(out["loss"]).backward()
        scaler.step(optimizer)
        scaler.update()
        for k, v in out.items():
            sums[k] = sums.get(k, 0) + v.detach().float() * len(idx)
    return {k: round(float(v) / len(train.labels), 6) for k, v in sums.items()}
