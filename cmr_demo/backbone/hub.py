"""Whether a backbone's weights can be had without waiting: the local caches, HF_HUB_OFFLINE, and a quick probe
of the download host.

Why: open_clip retries a download for ~45 s when the hub cannot be reached. The caches are looked in first and,
when the weights are missing and the host is out of reach (or HF_HUB_OFFLINE=1), loading fails at once with the
ways to provide the weights locally.
"""
from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from urllib.parse import urlparse

REACH_TIMEOUT_S = 1.0


class BackboneError(ValueError):
    """A backbone spec cannot be resolved or loaded; the message says how to fix it."""


def reachable(url: str) -> bool:
    """TCP connect within ~1 s (in a thread, so a hanging DNS lookup cannot block us longer)."""
    host, port = urlparse(url).hostname or "", urlparse(url).port or 443
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=REACH_TIMEOUT_S).close()
            result.append(True)
        except OSError:
            result.append(False)
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(REACH_TIMEOUT_S + 0.2)
    return bool(result and result[0])


def hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def cached_hf(repo_id: str, filenames: Sequence[str]) -> str | None:
    from huggingface_hub import try_to_load_from_cache
    for name in filenames:
        hit = try_to_load_from_cache(repo_id, name)
        if isinstance(hit, str):
            return hit
    return None


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def require_downloadable(spec, where: str, cached: str | None) -> None:
    """Raise at once when the weights of `spec` (a BackboneSpec) are neither cached nor reachable."""
    if cached:
        return
    why = "HF_HUB_OFFLINE is set" if hf_offline() else (None if reachable(where) else f"{where} cannot be reached")
    if why:
        raise BackboneError(
            f"weights for backbone '{spec.text}' are not in the local cache and {why}. Provide them locally: "
            f"a weights file ('{spec.arch or 'ARCH'}:/path/to/open_clip_model.safetensors'), a folder "
            f"('local-dir:/path' with open_clip_config.json and weights), or fetch them once on a machine "
            f"with network access (HF_HUB_OFFLINE unset) to fill the cache.")
