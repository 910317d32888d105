"""The lab's settings: which objectives it takes, what a user may change and within which bounds, and the run's
configs built from the bundle's own run (`settings_for`), so that the bundle's settings and seed give its stored
metrics. `LabSettings` is a request's settings as one value; `Boxes` the values the page's boxes show."""
from __future__ import annotations

import functools
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path

from cmr_demo.bundle.layout import LAB_FEATURES
from cmr_demo.bundle.load import Bundle
from cmr_demo.files import load_json
from cmr_demo.serve.inputs import InputError, shown
from cmr_demo.train.fit import TrainConfig
from cmr_demo.train.heads import HeadConfig
from cmr_demo.train.objectives import OBJECTIVES, option_defaults, parse_hybrid
from cmr_demo.train.spec import ObjectiveSpec

MAX_EPOCHS = 1000  # early stopping or the time cap ends a run long before
MAX_DIM = 1024  # the paper's embedding width; wider runs would cost memory for every session that keeps one
MAX_PARTS = 4  # parts of a hybrid objective: each costs a loss per batch
# what a user may set, with its bounds: (type, low, high); everything else comes from the bundle's own run
LIMITS: dict[str, tuple[type, float, float]] = {
    "lr": (float, 1e-6, 1.0), "batch_size": (int, 8, 4096), "epochs": (int, 1, MAX_EPOCHS), "patience": (int, 1, 100),
    "seed": (int, 0, 2 ** 31 - 1), "text_fraction": (float, 0.0, 1.0), "image_fraction": (float, 0.0, 1.0),
    "embed_dim": (int, 2, MAX_DIM), "hidden_dim": (int, 2, MAX_DIM)}



@dataclass(frozen=True)
class LabSettings:
    """What one lab request asks for: an objective (a registry name or a hybrid like 'pcl+0.5*tl'), its options
    ('margin=0.3,temperature=0.5'; "" = defaults), and any of the bounded settings (None: the bundle's own)."""
    objective: object
    options: object = ""
    text_fraction: object = 1.0
    image_fraction: object = 1.0
    seed: object = None
    lr: object = None
    batch_size: object = None
    epochs: object = None
    patience: object = None
    embed_dim: object = None
    hidden_dim: object = None

    def configs(self, bundle: Bundle) -> tuple[TrainConfig, HeadConfig]:
        """The run's configs, checked (InputError names the setting and its bounds)."""
        overrides = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("objective", "options")}
        return settings_for(bundle, self.objective, self.options, **overrides)


@dataclass(frozen=True)
class Boxes:
    """The bundle's own settings for an objective, as the lab's boxes show them (in the boxes' order)."""
    lr: float
    batch_size: int
    epochs: int
    patience: int
    embed_dim: int
    hidden_dim: int
    seed: int
    options_hint: str  # "empty = the bundle's: scale=4" (the options box's placeholder)

    @classmethod
    def of(cls, bundle: Bundle, objective: object) -> Boxes:
        train, heads = base_settings(bundle, check_objective(objective))
        # the bundle's own options over the objective's defaults: what an empty box trains with
        own = {**option_defaults(train.objective), **(train.objective_options or {})}
        options = ",".join(f"{k}={v:g}" for k, v in own.items())
        return cls(train.lr, train.batch_size, train.epochs, train.patience, heads.embed_dim, heads.hidden_dim,
                   train.seed, f"empty = the bundle's: {options or 'none'}")

    def values(self) -> tuple:
        return astuple(self)


def has_lab(bundle: Bundle) -> bool:
    return LAB_FEATURES in bundle.manifest["files"]


def check_objective(spec: object) -> str:
    """An objective of the registry or a hybrid like 'pcl+0.5*tl' (refused in the app's words otherwise)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"choose an objective: {', '.join(OBJECTIVES)}, or a hybrid like 'pcl+0.5*tl'")
    if len(spec) > 80:
        raise InputError(f"the objective is {len(spec)} characters long; a hybrid has at most {MAX_PARTS} parts, "
                         f"like 'pcl+0.5*tl'")
    try:
        parts = parse_hybrid(spec.strip())
    except ValueError:
        raise InputError(f"unknown objective {spec.strip()[:40]!r}: choose one of {', '.join(OBJECTIVES)}, or a hybrid "
                         f"like 'pcl+0.5*tl' (weights times objectives, joined by +)") from None
    if len(parts) > MAX_PARTS:
        raise InputError(f"a hybrid objective has at most {MAX_PARTS} parts here; '{spec.strip()[:40]}' has "
                         f"{len(parts)}")
    return spec.strip()


@functools.lru_cache(maxsize=256)
def _run_config(path: Path) -> dict:
    """A bundle run's config.json, read once (bundles do not change while served; every lab request asks)."""
    return load_json(path)


def base_settings(bundle: Bundle, objective: str) -> tuple[TrainConfig, HeadConfig]:
    """The bundle's own settings for `objective` (from its run's config.json), or its best run's settings with
    that objective and its default options when the bundle did not train it."""
    runs = {n: e for n, e in bundle.manifest["objectives"].items() if e.get("kind") != "zero-shot"}  # no settings
    name = objective if objective in runs else max(runs, key=lambda n: runs[n]["avg_map"])
    config = _run_config(bundle.folder / runs[name]["dir"] / "config.json")
    train = TrainConfig(**{k: v for k, v in config["train"].items() if k in {f.name for f in fields(TrainConfig)}})
    if name != objective:
        train = replace(train, objective=objective, objective_options={})
    return replace(train, device="cpu", precision="fp32"), HeadConfig(**config["heads"])


def settings_for(
    bundle: Bundle, objective: object, options: object = "", **overrides
) -> tuple[TrainConfig, HeadConfig]:
    """The run's settings: the bundle's own for the objective, then the user's options and overrides, checked."""
    objective = check_objective(objective)
    train, heads = base_settings(bundle, objective)
    if options is not None and not isinstance(options, str):
        raise InputError(f"options are text like 'margin=0.3,temperature=0.5'; got {shown(options)}")
    try:  # the trainer's own parser: an option no part of the objective has is refused, naming the valid ones
        spec = ObjectiveSpec.parse(objective, [p for p in (options or "").split(",") if p.strip()])
    except ValueError as err:
        raise InputError(str(err)) from None
    if spec.options:
        train = replace(train, objective_options={**train.objective_options, **spec.options_for(objective)})
    changes = {}
    for key, value in overrides.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        kind, low, high = LIMITS[key]
        try:
            number = float(value)
            if kind is int:
                if not number.is_integer():
                    raise ValueError
                number = int(number)
        except (TypeError, ValueError, OverflowError):
            whole = "a whole number" if kind is int else "a number"
            raise InputError(f"{key.replace('_', ' ')} must be {whole}; got {shown(value)}") from None
        if isinstance(value, bool) or not low <= number <= high or (key.endswith("fraction") and number <= 0):
            span = f"in (0, {high:g}]" if key.endswith("fraction") else f"from {low:g} to {high:g}"
            raise InputError(f"{key.replace('_', ' ')} must be {span}; got {shown(value)}")
        changes[key] = number
    head_keys = {f.name for f in fields(HeadConfig)}
    try:  # the configs' own checks (a setting no training can use) in the app's words
        train = replace(train, **{k: v for k, v in changes.items() if k not in head_keys})
        heads = replace(heads, **{k: v for k, v in changes.items() if k in head_keys})
    except ValueError as err:
        raise InputError(str(err)) from None
    return train, heads


def changes(bundle: Bundle, train: TrainConfig, heads: HeadConfig) -> str:
    """What a run changes from the bundle's own settings for its objective, short: 'margin=0.3, text 0.3'.
    Goes into the run's name, so a user can tell runs apart in Compare, the leaderboard and the maps."""
    base_train, base_heads = base_settings(bundle, train.objective)
    short = {"text_fraction": "text", "image_fraction": "image", "batch_size": "batch", "embed_dim": "embed",
             "hidden_dim": "hidden"}
    parts = [f"{k}={v:g}" for k, v in train.objective_options.items() if base_train.objective_options.get(k) != v]
    for cfg, base in ((train, base_train), (heads, base_heads)):
        for f in fields(cfg):
            if f.name in LIMITS and getattr(cfg, f.name) != getattr(base, f.name):
                parts.append(f"{short.get(f.name, f.name)} {getattr(cfg, f.name):g}")
    return ", ".join(parts)


