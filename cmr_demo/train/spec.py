"""What a training job trains: objective names (hybrids allowed) and their options, parsed and checked once
(`ObjectiveSpec`), shared by the trainer, studies, bundles and the lab. The objectives themselves and their registry
live in `cmr_demo.train.objectives`."""
from __future__ import annotations

import math
from dataclasses import dataclass

from cmr_demo.train.objectives import expand_objectives, option_defaults


@dataclass(frozen=True)
class ObjectiveSpec:
    """What a training job trains: objective names (hybrids allowed) and their options, parsed and checked
    once and shared by the trainer, studies and bundles.

    Why one value: options used to travel as KEY=VALUE strings through three parsers, and one of them dropped
    an option no objective declared (`margn=0.3` trained and recorded `{}`). Here an option is a number
    that at least one of the names declares, or the spec is refused naming the valid options; each run
    gets only the options its objective declares (`margin` reaches tl, not pcl, in `pcl,tl`)."""
    names: tuple[str, ...]
    options: tuple[tuple[str, float], ...] = ()

    @classmethod
    def parse(cls, objectives: str | list[str] | tuple[str, ...],
              options: dict[str, float] | list[str] | tuple[str, ...] = ()) -> ObjectiveSpec:
        """`objectives`: 'pcl', 'pcl,ce', 'all', 'pcl+0.5*tl' or a list of such; `options`: {'margin': 0.3}
        or ['margin=0.3']."""
        text = objectives if isinstance(objectives, str) else ",".join(objectives)
        names = tuple(expand_objectives(text))
        pairs = options.items() if isinstance(options, dict) else (_option_pair(o) for o in options)
        parsed = {}
        for key, value in pairs:
            try:
                parsed[key] = float(value)
            except (TypeError, ValueError):
                parsed[key] = math.nan
            if not math.isfinite(parsed[key]):
                raise ValueError(f"objective option {key}: '{value}' is not a finite number")
        valid = set().union(*(option_defaults(n) for n in names))
        for key in parsed:
            if key not in valid:
                raise ValueError(f"objective option '{key}': no selected objective ({', '.join(names)}) has it; "
                                 f"their options: {sorted(valid) or 'none'}")
        return cls(names, tuple(sorted(parsed.items())))

    def options_for(self, name: str) -> dict[str, float]:
        """The options objective `name` declares (the others belong to other selected objectives)."""
        declared = option_defaults(name)
        return {k: v for k, v in self.options if k in declared}

    def effective_options(self, name: str) -> dict[str, float]:
        """Every option of `name` as it trains: its defaults with the given ones applied."""
        return {**option_defaults(name), **self.options_for(name)}

    def argv(self) -> list[str]:
        return [
            "--objective",
            ",".join(self.names),
            *(a for k, v in self.options for a in ("--objective-opt", f"{k}={v!r}")),
        ]


def _option_pair(text: str) -> tuple[str, str]:
    key, sep, value = str(text).partition("=")
    if not sep or not key.strip():
        raise ValueError(f"an objective option takes KEY=VALUE, got '{text}'")
    return key.strip(), value.strip()
