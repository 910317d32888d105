"""The files gradio handed out, as the upload store needs them: its cache folder, the paths its upload route
received (`Blocks.upload_file_set`), its per-component sets of files it serves (`Blocks.temp_file_sets`, which a
deleted upload must leave), the files a component keeps for as long as the app runs (`Block.keep_in_cache`), and
the pictures an example list cached (`Examples.dataset.samples`). Checked by tests/test_ui_context.py against the
installed gradio."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from gradio.utils import get_upload_folder


def cache_folder() -> str:
    """gradio's upload and cache folder (GRADIO_TEMP_DIR; app.py gives it a private one)."""
    return get_upload_folder()


@dataclass
class GradioFiles:
    """gradio's registries of files for one Blocks (`blocks` is set by `ServedBlocks` when it is made with this
    registry; before that, every registry is empty)."""
    blocks: gr.Blocks | None = None

    def uploaded(self) -> set:
        """The paths gradio received through its upload route."""
        return self.blocks.upload_file_set if self.blocks is not None else set()

    def sets(self) -> list[set]:
        """gradio's sets of files it handed out (per component), which a deleted upload must leave."""
        return self.blocks.temp_file_sets if self.blocks is not None else []

    def handed_out(self, path: str) -> bool:
        """Whether gradio handed `path` out (an upload, a result copy, an example)."""
        return any(path in files for files in self.sets())

    def kept(self) -> set[str]:
        """Files components keep in gradio's folder for as long as the app runs (the header's pictures ...)."""
        if self.blocks is None:
            return set()
        return set().union(*(getattr(b, "keep_in_cache", set()) for b in self.blocks.blocks.values()))


def example_pictures(examples: gr.Examples) -> list[str | None]:
    """The cached path of each example's first value (a picture), None where it is not a file."""
    return [sample[0]["path"] if isinstance(sample[0], dict) else None for sample in examples.dataset.samples]


def example_click(examples: gr.Examples):
    """The event a click on one of `examples` fires (it fills the inputs): other events follow it with `.then`."""
    return examples.load_input_event
