"""Bundles on the Hugging Face Hub: `hf:ORG/NAME[@REVISION]` wherever a bundle folder is accepted, and
`python -m cmr_demo.bundle push` to put one there.

Why the Hub: it is where this ecosystem keeps checkpoints (open_clip, timm and sentence-transformers load weights by
repository name), so a bundle trained on a GPU box travels to a Space by name instead of inside the Space's own git
repository. The bundle's model card is the repository's README.md, with `model-index` results the Hub shows.

Fetching goes through `huggingface_hub.snapshot_download` and its cache (HF_HOME), so a bundle downloaded once is
served offline (`HF_HUB_OFFLINE=1`). The snapshot's files are then linked (hard links: no copy, no symbolic link
leading out of the folder) into a folder of its own under the feature cache's `hub/`, named after the repository, and
every file is checked against the manifest's sha256 by the loader before anything is served. Every failure is one
line naming the repository and what to do, raised as `HubError`, without retries that last minutes.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

PREFIX = "hf:"
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
ETAG_TIMEOUT_S = 10.0  # huggingface_hub's own default; a missing network fails at connect, long before


class HubError(ValueError):
    """A bundle could not be fetched from (or pushed to) the Hub; the message names the repository and the fix."""


def is_hub(spec: object) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def parse(spec: str) -> tuple[str, str | None]:
    """'hf:ORG/NAME[@REVISION]' -> (repo id, revision or None), checked."""
    body = spec[len(PREFIX):]
    repo, _, revision = body.partition("@")
    if not _REPO.match(repo) or ".." in repo:
        raise HubError(f"'{spec[:120]}' is not a Hub bundle: write hf:ORG/NAME or hf:ORG/NAME@REVISION "
                       f"(a branch, tag or commit)")
    if revision and (not _REVISION.match(revision) or ".." in revision):
        raise HubError(f"'{revision[:60]}' is not a revision of {repo}: give a branch, tag or commit hash")
    return repo, revision or None


def cache_root() -> Path:
    """Where fetched bundles are linked into folders of their own (beside the feature cache)."""
    base = os.environ.get("CMR_CACHE_DIR") or os.path.join(Path.home(), ".cache", "cmr_demo", "features")
    return Path(base).parent / "hub" if Path(base).name == "features" else Path(base) / "hub"


def fetch(spec: str) -> Path:
    """The bundle `spec` names, as a local folder named after the repository: from the Hub cache when it holds the
    revision (offline too), else downloaded. HubError, in one line, when it cannot be had."""
    repo, revision = parse(spec)
    snapshot = _snapshot(repo, revision)
    try:
        _check_manifest_blob(snapshot, repo)
        return _link_tree(snapshot, cache_root() / snapshot.name / repo.replace("/", "--") / repo.split("/")[1])
    except OSError as err:
        raise HubError(f"Hub bundle {repo}: its cached files could not be linked into place ({type(err).__name__}: "
                       f"{str(err)[:160]}); check the cache's disk and permissions, or delete {snapshot.parent.parent} "
                       f"and fetch it again") from None


def _snapshot(repo: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub import errors
    where = f"{repo}" + (f"@{revision}" if revision else "")
    try:
        folder = Path(snapshot_download(repo, revision=revision, repo_type="model", etag_timeout=ETAG_TIMEOUT_S))
    except errors.RevisionNotFoundError:
        raise HubError(f"Hub bundle {where}: the repository has no revision '{revision}'; name a branch, tag or "
                       f"commit it has") from None
    except errors.GatedRepoError:
        raise HubError(f"Hub bundle {where}: the repository is gated; accept its terms on the Hub and log in "
                       f"(hf auth login or HF_TOKEN)") from None
    except errors.RepositoryNotFoundError:
        raise HubError(f"Hub bundle {where}: no such repository, or it is private (log in with hf auth login or set "
                       f"HF_TOKEN)") from None
    except errors.LocalEntryNotFoundError:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        why = ("HF_HUB_OFFLINE is set, so nothing is downloaded" if offline else "the Hub could not be reached")
        raise HubError(f"Hub bundle {where} is not in the Hugging Face cache ({_hub_cache()}) and {why}: fetch it once "
                       f"with network (python -m cmr_demo.bundle verify hf:{where}), or set HF_HOME to the cache that "
                       f"holds it") from None
    except errors.HfHubHTTPError as err:
        raise HubError(f"Hub bundle {where}: the Hub answered {str(err).splitlines()[0][:200]}") from None
    except OSError as err:
        raise HubError(f"Hub bundle {where}: {type(err).__name__}: {str(err)[:200]}") from None
    if not (folder / "manifest.json").is_file():
        raise HubError(f"Hub repository {where} holds no bundle (no manifest.json at its root); push one with "
                       f"python -m cmr_demo.bundle push DIR --repo {repo}")
    return folder


def _hub_cache() -> str:
    from huggingface_hub import constants
    return str(constants.HF_HUB_CACHE)


def _check_manifest_blob(snapshot: Path, repo: str) -> None:
    """The manifest holds every other file's sha256, so where the cache links it to its blob (as huggingface_hub does
    wherever symbolic links work) it is checked against the blob's name (a git blob sha1, or the sha256 of a large
    file): a manifest changed in the cache is refused. The link must lead into the cache's blobs before anything is
    read through it. A cache of plain files (no links) has no such name to check against."""
    path = snapshot / "manifest.json"
    if not path.is_symlink():
        return
    if not path.resolve().is_relative_to((snapshot.parent.parent / "blobs").resolve()) or not path.resolve().is_file():
        raise HubError(f"Hub bundle {repo}: manifest.json in the cache links outside its blobs; delete "
                       f"{snapshot.parent.parent} and fetch it again")
    name = Path(os.readlink(path)).name
    data = path.read_bytes()
    digest = (hashlib.sha256(data).hexdigest() if len(name) == 64 else
              hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())
    if digest != name:
        raise HubError(f"Hub bundle {repo}: manifest.json in the cache does not match the blob the Hub sent (changed "
                       f"on disk?): delete {snapshot.parent.parent} and fetch it again")


def _link_tree(snapshot: Path, target: Path) -> Path:
    """The snapshot's regular files, hard-linked (copied across file systems) into `target`; symbolic links are
    followed only to the cache's own blobs. Rebuilt from scratch each time: a tampered link never survives."""
    blobs = (snapshot.parent.parent / "blobs").resolve()
    if _same_files(snapshot, target):  # linked before (another start, or another process serving it): reuse, untouched
        return target
    work = target.parent / f".{target.name}.linking-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    for path in sorted(snapshot.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(snapshot)
        source = path.resolve()
        if path.is_symlink() and not source.is_relative_to(blobs):
            raise HubError(f"Hub bundle in {snapshot}: {rel} links outside the cache's blobs; delete the cached "
                           f"repository and fetch it again")
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, work / rel)
        except OSError:
            shutil.copy2(source, work / rel)
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)  # moved aside in one step, removed after the new one is in place
    os.replace(work, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def _same_files(snapshot: Path, target: Path) -> bool:
    """`target` holds exactly the snapshot's files, each the very same file (hard links share an inode)."""
    if not target.is_dir():
        return False
    wanted = {p.relative_to(snapshot): p.resolve().stat() for p in snapshot.rglob("*") if not p.is_dir()}
    have = {p.relative_to(target): p.stat() for p in target.rglob("*") if not p.is_dir()}
    return wanted.keys() == have.keys() and all(
        (w.st_ino, w.st_dev) == (have[rel].st_ino, have[rel].st_dev) for rel, w in wanted.items())


def resolve(spec: str | Path) -> tuple[Path, str | None]:
    """(a local folder, the name to serve it under or None) for a bundle spec: a folder as given, or `hf:` fetched
    and named after its repository."""
    if is_hub(spec):
        repo, _ = parse(str(spec))
        return fetch(str(spec)), repo.split("/")[1]
    return Path(spec), None


def push_files(folder: Path) -> list[str]:
    """What a push uploads: every file the manifest lists (the model card README.md among them), then the manifest."""
    from cmr_demo.files import load_json
    listed = load_json(folder / "manifest.json").get("files") or {}
    return [*sorted(listed), "manifest.json"]


def push(folder: str | Path, repo: str, private: bool = False, revision: str | None = None, dry_run: bool = False,
         api=None) -> dict:
    """Verify the bundle in `folder`, then upload it to the Hub repository `repo` (created when missing; `revision`
    a branch, created from the default one when missing) in one commit, large files as the Hub stores them (LFS).
    Returns {repo, revision, files: [(path, bytes)], card, operations}; with `dry_run` nothing is uploaded."""
    from huggingface_hub import CommitOperationAdd

    from cmr_demo.bundle.card import CARD_FILE
    from cmr_demo.bundle.verify import verify
    folder = Path(folder)
    repo, _ = parse(PREFIX + repo + (f"@{revision}" if revision else ""))
    problems = verify(folder, require_card=True)
    if problems:
        raise HubError(f"{folder} does not verify, so it is not pushed: " + "; ".join(problems[:3]))
    files = push_files(folder)
    operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel)) for rel in files]
    plan = {
        "repo": repo,
        "revision": revision or "main",
        "files": [(rel, (folder / rel).stat().st_size) for rel in files],
        "card": (folder / CARD_FILE).read_text(),
        "operations": operations,
    }
    if dry_run:
        return plan
    if api is None:
        from huggingface_hub import HfApi
        api = HfApi()
    from huggingface_hub import errors
    try:
        api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo, branch=revision, exist_ok=True, repo_type="model")
        commit = api.create_commit(repo, operations, commit_message=f"CLIP4CMR bundle {folder.resolve().name}",
                                   revision=revision, repo_type="model")
    except errors.HfHubHTTPError as err:
        raise HubError(f"pushing to {repo}: the Hub answered {str(err).splitlines()[0][:200]} (log in with hf auth "
                       f"login or set HF_TOKEN with write access)") from None
    except OSError as err:
        raise HubError(f"pushing to {repo}: {type(err).__name__}: {str(err)[:200]}") from None
    return {**plan, "commit": getattr(commit, "oid", None), "url": getattr(commit, "commit_url", None)}
