"""`python -m cmr_demo.bundle build|verify|add-lab`: the bundle stage's command line (built from the training
stage's own flags)."""
from __future__ import annotations

import argparse

from cmr_demo.bundle.build import add_lab, build
from cmr_demo.bundle.verify import verify


def main(argv: list[str] | None = None) -> int:
    from cmr_demo.cliargs import HelpFormatter
    from cmr_demo.train.stage import add_job_args, job_from_args
    parser = argparse.ArgumentParser(prog="python -m cmr_demo.bundle", description=__doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train every objective and assemble a bundle the app serves",
                       description="Train one checkpoint per objective (the training stage, cmr_demo.train), then "
                                   "write the gallery, embeddings, maps, backbone and manifest into --out. Without "
                                   "--backbone, on data that ships features (clip4cmr:, npz:, wikipedia: with "
                                   "raw_features.mat, synthetic), the bundle is features-only.",
                       formatter_class=HelpFormatter)
    add_job_args(b, objectives="all")
    b.add_argument("--out", required=True, help="bundle folder (must be empty, or pass --overwrite)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing bundle in --out")
    b.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    v = sub.add_parser("verify", help="check hashes, shapes and completeness", formatter_class=HelpFormatter,
                       description="Check every file's sha256, every array's shape and each objective's files.")
    v.add_argument("folder", help="the bundle folder")
    a = sub.add_parser("add-lab", help="add the lab's train/val/test features to a bundle built before them",
                       formatter_class=HelpFormatter,
                       description="Re-derive the features the bundle was trained on from the data and backbone it "
                                   "names, check them against its gallery, and add them (the app's objective lab).")
    a.add_argument("folder", help="the bundle folder")
    args = parser.parse_args(argv)
    if args.command == "add-lab":
        print(f"wrote {add_lab(args.folder)}")
        return 0
    if args.command == "build":
        manifest = build(job_from_args(args, None), args.out, args.overwrite)
        print(f"bundle written to {args.out}: {len(manifest['objectives'])} objectives, "
              f"{manifest['data']['gallery_items']} gallery items, {len(manifest['files'])} files")
        return 0
    problems = verify(args.folder)
    print("\n".join(problems) if problems else f"{args.folder}: OK")
    return 1 if problems else 0

