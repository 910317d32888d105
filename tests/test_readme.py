"""The README's commands and snippets run as written, offline (a placeholder path and a backbone that needed a
download once made its Python lines fail)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # the snippet trains two objectives and builds a bundle


def test_the_readmes_python_snippet_runs_as_written_offline(tmp_path):
    text = (ROOT / "README.md").read_text()
    snippet = re.search(r"## From Python\n\n```python\n(.*?)```", text, re.S).group(1)
    script = snippet.replace('"bundles/mine"', repr(str(tmp_path / "mine")))  # the bundle goes to a temp folder
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CMR_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "mine" / "manifest.json").is_file()
    from cmr_demo.bundle.verify import verify
    assert verify(tmp_path / "mine") == []
