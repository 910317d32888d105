"""Is the repository publishable as a Hugging Face Space as it is? `python -m cmr_demo.serve.publish [ROOT]`.

Checks, each a list of problems (exit 1 when any is found):
- files: every file git would push that is binary (a NUL byte in its first 8 kB, git's own test) or
  over 10 MB matches an LFS pattern of `.gitattributes` (the hub refuses both in plain git);
- space: README.md's YAML front matter has sdk gradio, sdk_version equal to the pinned gradio,
  python_version, and an app_file that exists;
- requirements: every requirement line is pinned with `==`;
- bundles: every bundle folder under assets/ verifies and carries its model card (README.md) that
  agrees with its manifest;
- license: LICENSE and CITATION.cff exist.
"""
from __future__ import annotations

import argparse
import fnmatch
import re
import subprocess
import sys
from pathlib import Path

MAX_PLAIN_BYTES = 10 * 1024 * 1024  # the hub's limit for a file outside LFS


def lfs_patterns(root: Path) -> list[str]:
    path = root / ".gitattributes"
    if not path.is_file():
        return []
    return [line.split()[0] for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#") and "filter=lfs" in line.split()[1:]]


def _matches(rel: str, patterns: list[str]) -> bool:
    """gitattributes matching: a pattern without a slash matches the file name at any depth; one with a
    slash matches the whole path, `*` never crossing a '/'."""
    def one(pattern: str) -> bool:
        if "/" not in pattern:
            return fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], pattern)
        parts, segs = pattern.strip("/").split("/"), rel.split("/")
        return len(parts) == len(segs) and all(fnmatch.fnmatchcase(s, p) for s, p in zip(segs, parts))
    return any(one(p) for p in patterns)


def pushed_files(root: Path) -> list[str]:
    """Files git would push: tracked plus untracked-not-ignored (a checkout with uncommitted files too)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True).stdout.decode()
    return sorted({f for f in out.split("\0") if f and (root / f).is_file()})


def check_files(root: Path, files: list[str]) -> list[str]:
    patterns, problems = lfs_patterns(root), []
    for rel in files:
        path = root / rel
        size = path.stat().st_size
        with path.open("rb") as f:
            binary = b"\0" in f.read(8000)
        if (binary or size > MAX_PLAIN_BYTES) and not _matches(rel, patterns):
            why = f"{size / 1e6:.1f} MB" if size > MAX_PLAIN_BYTES else "binary"
            problems.append(f"{rel}: {why} but matches no LFS pattern in .gitattributes (add e.g. "
                            f"'*{Path(rel).suffix or rel} filter=lfs diff=lfs merge=lfs -text')")
    return problems


def pinned(root: Path, name: str) -> str | None:
    path = root / "requirements.txt"
    for line in path.read_text().splitlines() if path.is_file() else []:
        m = re.match(rf"^\s*{re.escape(name)}\s*==\s*([^\s#;]+)", line, re.IGNORECASE)
        if m:
            return m.group(1)
    return None


def check_space(root: Path) -> list[str]:
    import yaml
    text = (root / "README.md").read_text() if (root / "README.md").is_file() else ""
    m = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    if not m:
        return ["README.md has no YAML front matter (--- ... ---) for the Space"]
    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError as err:
        return [f"README.md front matter is not valid YAML: {err}"]
    problems = []
    if meta.get("sdk") != "gradio":
        problems.append(f"front matter sdk is {meta.get('sdk')!r}, expected 'gradio'")
    want = pinned(root, "gradio")
    if str(meta.get("sdk_version")) != str(want):
        problems.append(f"front matter sdk_version {meta.get('sdk_version')!r} differs from the pinned gradio=={want}")
    if not meta.get("python_version"):
        problems.append("front matter has no python_version")
    app = meta.get("app_file")
    if not app or not (root / str(app)).is_file():
        problems.append(f"front matter app_file {app!r} does not name a file in the repository")
    return problems


def check_requirements(root: Path) -> list[str]:
    problems = [] if (root / "requirements.txt").is_file() else ["requirements.txt is missing: a Space installs from "
                                                                 "it"]
    for name in ("requirements.txt", "requirements-dev.txt"):
        path = root / name
        if not path.is_file():
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            req = line.split("#", 1)[0].strip()
            if req and not req.startswith("-r") and "==" not in req:
                problems.append(f"{name}:{n}: '{req}' is not pinned with ==")
    return problems


def check_bundles(root: Path) -> list[str]:
    from cmr_demo.bundle.verify import verify
    problems = []
    for manifest in sorted((root / "assets").glob("*/manifest.json")):
        folder = manifest.parent
        problems += [f"{folder.relative_to(root)}: {p}" for p in verify(folder, require_card=True)]
    return problems


def check_license(root: Path) -> list[str]:
    return [f"{name} is missing" for name in ("LICENSE", "CITATION.cff") if not (root / name).is_file()]


def check(root: str | Path) -> dict[str, list[str]]:
    root = Path(root).resolve()
    return {"files": check_files(root, pushed_files(root)), "space": check_space(root),
            "requirements": check_requirements(root), "bundles": check_bundles(root), "license": check_license(root)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cmr_demo.serve.publish", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", nargs="?", default=".", help="the repository to check")
    args = p.parse_args(argv)
    results = check(args.root)
    for name, problems in results.items():
        print(f"{name}: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
        for line in problems[:20]:
            print(f"  - {line}")
    return 1 if any(results.values()) else 0


if __name__ == "__main__":
    from cmr_demo.cli import run
    sys.exit(run(main))
