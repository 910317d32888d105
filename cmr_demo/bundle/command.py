"""`python -m cmr_demo.bundle build|verify|add-lab|migrate|push`: the bundle stage's command line (built from the
training stage's own flags). `verify` takes a folder or a Hub bundle (`hf:ORG/NAME[@REVISION]`)."""
from __future__ import annotations

import argparse

from cmr_demo.bundle.build import add_lab, build
from cmr_demo.bundle.build_args import add_build_args
from cmr_demo.bundle.migrate import migrate
from cmr_demo.bundle.verify import verify


def main(argv: list[str] | None = None) -> int:
    from cmr_demo.cliargs import HelpFormatter
    from cmr_demo.train.stage import job_from_args

    parser = argparse.ArgumentParser(
        prog="python -m cmr_demo.bundle", description=__doc__, formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_build_args(sub.add_parser(
        "build", help="train every objective and assemble a bundle the app serves", formatter_class=HelpFormatter,
        description="Train one checkpoint per objective (the training stage, cmr_demo.train), then write the gallery, "
                    "embeddings, maps, backbone and manifest into --out. Without --backbone, on data that ships "
                    "features (clip4cmr:, npz:, wikipedia: with raw_features.mat, synthetic), the bundle is "
                    "features-only."))
    for name, help_text, description in (
            ("verify", "check hashes, shapes and completeness",
             "Check every file's sha256, every array's shape and each objective's files."),
            ("add-lab", "add the lab's train/val/test features to a bundle built before them",
             "Re-derive the features the bundle was trained on from the data and backbone it names, check them "
             "against its gallery, and add them (the app's objective lab)."),
            ("migrate", "bring a bundle of an older format to the current one (nothing is retrained)",
             "Rewrite the manifest of an older bundle in the current format; every other file is kept as it is.")):
        sub.add_parser(name, help=help_text, description=description, formatter_class=HelpFormatter).add_argument(
            "folder", help="the bundle folder")
    push = sub.add_parser("push", help="verify a bundle and upload it to a Hugging Face Hub repository",
                          formatter_class=HelpFormatter,
                          description="Verify the bundle, then upload every file it lists and its manifest to the Hub "
                                      "repository --repo in one commit (large files as LFS); its model card becomes "
                                      "the repository's README.md. Serve it with --bundle hf:ORG/NAME.")
    push.add_argument("folder", help="the bundle folder")
    push.add_argument("--repo", required=True, metavar="ORG/NAME", help="the Hub repository (created when missing)")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--revision", default=None, metavar="BRANCH", help="push to this branch (created when missing)")
    push.add_argument("--dry-run", action="store_true", help="list every file and print the card; upload nothing")
    args = parser.parse_args(argv)
    if args.command == "push":
        return _push(args)
    if args.command == "add-lab":
        print(f"wrote {add_lab(args.folder)}")
        return 0
    if args.command == "migrate":
        print(f"{args.folder}: " + ("migrated" if migrate(args.folder) else "already current"))
        return 0
    if args.command == "build":
        manifest = build(job_from_args(args, None), args.out, args.overwrite, args.seeds, args.ray, args.tune)
        print(f"bundle written to {args.out}: {len(manifest['objectives'])} objectives, "
              f"{manifest['data']['gallery_items']} gallery items, {len(manifest['files'])} files")
        return 0
    from cmr_demo.bundle.hub import resolve
    problems = verify(resolve(args.folder)[0])
    print("\n".join(problems) if problems else f"{args.folder}: OK")
    return 1 if problems else 0


def _push(args) -> int:
    from cmr_demo.bundle.hub import push
    plan = push(args.folder, args.repo, args.private, args.revision, args.dry_run)
    total = sum(size for _, size in plan["files"])
    where = f"{plan['repo']}@{plan['revision']}"
    if args.dry_run:
        print("\n".join(f"{size:>12,}  {rel}" for rel, size in plan["files"]))
        print(f"{len(plan['files'])} files, {total:,} bytes would go to {where} (dry run: nothing uploaded)\n")
        print(plan["card"])
        return 0
    print(f"pushed {len(plan['files'])} files ({total:,} bytes) to {where}: {plan.get('url') or ''}\n"
          f"serve it with: python app.py --bundle hf:{plan['repo']}" + (f"@{args.revision}" if args.revision else ""))
    return 0
