"""The publish check: it passes on this repository and catches each thing the hub or a Space refuses."""
import shutil
import subprocess
from pathlib import Path

import pytest

from cmr_demo.serve import publish

ROOT = Path(__file__).resolve().parents[1]


def test_this_repository_is_publishable():
    results = publish.check(ROOT)
    assert results == {k: [] for k in results}, results


@pytest.fixture()
def tree(tmp_path):
    """A small publishable repository: README front matter, pins, LFS rules, license, an app file."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "README.md").write_text("---\nsdk: gradio\nsdk_version: 6.31.0\npython_version: \"3.11\"\n"
                                    "app_file: app.py\n---\n# demo\n")
    (root / "requirements.txt").write_text("gradio==6.31.0\nnumpy==2.4.6  # pinned\n")
    (root / "app.py").write_text("print('hi')\n")
    (root / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    (root / "w.safetensors").write_bytes(b"\0" * 100)
    for name in ("LICENSE", "CITATION.cff"):
        (root / name).write_text("x\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def test_a_clean_tree_passes(tree):
    assert all(not v for v in publish.check(tree).values())


@pytest.mark.parametrize("break_it, section, words", [
    (lambda r: (r / "img.png").write_bytes(b"\x89PNG\0\0"), "files", "img.png: binary"),
    (lambda r: (r / "big.txt").write_text("x" * (publish.MAX_PLAIN_BYTES + 1)), "files", "big.txt: 10.5 MB"),
    (lambda r: (r / "requirements.txt").write_text("gradio==6.31.0\ntorch>=2\n"), "requirements", "'torch>=2'"),
    (lambda r: (r / "README.md").write_text("# no front matter\n"), "space", "no YAML front matter"),
    (lambda r: (r / "README.md").write_text("---\nsdk: gradio\nsdk_version: 5.0.0\npython_version: '3.11'\n"
                                            "app_file: app.py\n---\n"), "space", "differs from the pinned "
                                                                                 "gradio==6.31.0"),
    (lambda r: (r / "app.py").unlink(), "space", "app_file 'app.py' does not name a file"),
    (lambda r: (r / "LICENSE").unlink(), "license", "LICENSE is missing"),
])
def test_each_refusal_is_caught_and_named(tree, break_it, section, words):
    break_it(tree)
    problems = publish.check(tree)[section]
    assert any(words in p for p in problems), problems


def test_a_bundle_without_a_matching_card_is_caught(tree, small_bundle):
    shutil.copytree(small_bundle, tree / "assets" / "demo")
    assert publish.check(tree)["bundles"] == []
    card = tree / "assets" / "demo" / "README.md"
    card.write_text(card.read_text().replace("mAP", "mAp", 1))
    problems = publish.check(tree)["bundles"]
    assert any("does not agree with manifest.json" in p for p in problems) and any("sha256" in p for p in problems)
