"""The one place the app reaches into gradio's internals, for what no public hook does; tested against the
installed gradio (tests/test_gradio_adapter.py fails on an upgrade that moves what is used here).

- `ServedBlocks.preprocess_data`: gradio copies a client's FileData into its cache *before* any app code runs
  (and skips its own "was this uploaded?" check when mounted), and answers malformed arguments with its generic
  text and a traceback in the log. Event validators run after that copy, so they cannot help: files are checked
  here first, and a failure is the user's, told in the app's words.
- `limit_sessions`: how many sessions' component values gradio keeps is a `launch` option; the mounted app
  reads the attribute.
- `file_sets`: gradio's sets of the files it handed out (uploads, result copies); the upload gate reads and
  prunes them.
"""
from __future__ import annotations

import gradio as gr

from cmr_demo.serve.uploads import FILE_SHAPE, NOT_UPLOADED


class ServedBlocks(gr.Blocks):
    """Blocks whose input-reading failures are the user's, told in the app's words (see the module docstring).
    `made_here(path)`: whether a file path is one this app received or wrote (set by the app once its upload gate
    exists)."""

    made_here = staticmethod(lambda path: False)

    async def preprocess_data(self, block_fn, inputs, *args, **kwargs):
        for path in file_paths(inputs):
            if not isinstance(path, str):
                raise gr.Error(FILE_SHAPE, print_exception=False)
            if not self.made_here(path):
                raise gr.Error(NOT_UPLOADED, print_exception=False)
        if isinstance(inputs, list) and len(inputs) < len(block_fn.inputs):
            # arguments a raw HTTP caller left out at the end take the values gradio_client would send: the
            # components' starting values
            inputs = inputs + [getattr(c, "value", None) for c in block_fn.inputs[len(inputs):]]
        try:
            return await super().preprocess_data(block_fn, inputs, *args, **kwargs)
        except gr.Error:
            raise
        except Exception as err:  # noqa: BLE001 (pydantic's ValidationError, gradio's argument-count ValueError)
            first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
            if "ImageData" in first or "FileData" in first:
                raise gr.Error(FILE_SHAPE, print_exception=False) from None
            raise gr.Error(f"the request's arguments could not be read ({first}): send the endpoint's parameters "
                           f"as listed under 'Use via API' at the bottom of the page", print_exception=False) from None


def file_paths(value):
    """Every "path" of a FileData-like dict in a request's inputs, at any depth (gradio's own walk has no limit)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "path" in item:
                yield item["path"]
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def limit_sessions(demo: gr.Blocks, sessions: int) -> None:
    """Keep at most `sessions` sessions' component values (a `launch` option the mounted app reads)."""
    demo.state_session_capacity = sessions


def uploaded_files(demo: gr.Blocks) -> set:
    """The paths gradio received through its upload route."""
    return demo.upload_file_set


def file_sets(demo: gr.Blocks) -> list[set]:
    """gradio's sets of files it handed out (per component), which a deleted upload must leave."""
    return demo.temp_file_sets
