"""Command lines generated from config dataclasses: one flag per field, its default shown in --help.

Why: a parser written by hand repeats every default and drifts from the dataclass it fills; here the
dataclass is the single source (its `field(metadata={"help": ...})` is the flag's help text).
"""
from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from typing import Any


def field_default(f) -> Any:
    """A dataclass field's default value (calling its factory)."""
    return f.default if f.default is not MISSING else f.default_factory()


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in --help, except where there is none to show (required, None, a plain flag)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (action.required or default is None or default is False or default == [] or default is argparse.SUPPRESS
                or "%(default)" in text):
            return text
        return super()._get_help_string(action)


def add_dataclass_args(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """`--field-name` for every field of `cls` with a default (bools as --x/--no-x), typed from it; the
    field's metadata gives its help and, optionally, its choices. Use with `HelpFormatter`."""
    for f in fields(cls):
        if f.name in skip or (f.default is MISSING and f.default_factory is MISSING):
            continue
        default = field_default(f)
        flag = "--" + f.name.replace("_", "-")
        text = f.metadata.get("help", f.name.replace("_", " ")).replace("%", "%%")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=text, choices=f.metadata.get("choices"))


def dataclass_from_args(cls, namespace: argparse.Namespace):
    """An instance of `cls` from the parsed flags that `add_dataclass_args` added."""
    values = vars(namespace)
    return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})
