"""A bundle's model card (README.md in the Hugging Face hub's format), generated from its manifest.

Why generated: the card's numbers are the manifest's, so they cannot drift; `bundle verify` regenerates
the card and compares. The YAML front matter carries `model-index` results (mAP@all in both directions
per objective) so the hub shows them; the body says what the bundle is, how it was built and what
license covers what.
"""
from __future__ import annotations

import json

CARD_FILE = "README.md"
CODE_LICENSE = "The code that built this bundle is MIT-licensed (the CLIP4CMR demo's LICENSE)."
TITLE = "A Comprehensive Empirical Study of Vision-Language Pre-trained Model for Supervised Cross-Modal Retrieval"
CITATION = f"""@inproceedings{{zeng2022clip4cmr,
  title     = {{{TITLE}}},
  author    = {{Zeng, Zhixiong and Mao, Wenji}},
  booktitle = {{Proceedings of the 2022 International Conference on Multimedia Retrieval (ICMR '22)}},
  year      = {{2022}},
  eprint    = {{2201.02772}},
  archivePrefix = {{arXiv}}
}}"""


def _yaml(value) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON scalars are valid YAML and quote what needs quoting


LIBRARY = "cmr-demo"  # what loads a bundle: python app.py --bundle hf:ORG/NAME, or cmr_demo.load("hf:ORG/NAME")


def base_model(manifest: dict) -> str | None:
    """The Hub repository of the bundle's backbone when it has one (an open_clip pretrained tag published on the Hub),
    else None (a backbone trained here, a features-only bundle)."""
    backbone = manifest.get("backbone")
    if not isinstance(backbone, dict):
        return None
    arch, _, tag = str(backbone.get("built_from") or backbone.get("spec") or "").partition(":")
    if not tag or "/" in tag or tag.endswith((".safetensors", ".pt", ".bin")) or tag == "random":
        return None
    try:
        from open_clip.pretrained import get_pretrained_cfg
        hub = (get_pretrained_cfg(arch, tag) or {}).get("hf_hub", "")
    except Exception:  # noqa: BLE001 (open_clip missing or an unknown tag: the card simply has no base_model)
        return None
    return hub.strip("/") or None


def front_matter(manifest: dict) -> list[str]:
    """The Hub's YAML header: license, library, tags, base model where the backbone has one, and `model-index` with
    each objective's test mAP@all in both directions and their average."""
    data, about, name = manifest["data"], manifest.get("about", {}), manifest.get("name", "bundle")
    lines = ["---", f"license: {about.get('license_id', 'other')}", f"library_name: {LIBRARY}", "tags:",
             "- cross-modal-retrieval", "- clip", "- clip4cmr"]
    base = base_model(manifest)
    if base:
        lines.append(f"base_model: {_yaml(base)}")
    if about.get("hub_dataset"):
        lines += ["datasets:", f"- {_yaml(about['hub_dataset'])}"]
    lines += ["model-index:", f"- name: {_yaml(name)}", "  results:"]
    dataset = f"    dataset: {{type: {_yaml(data['spec'])}, name: {_yaml(data['spec'])}, split: test}}"
    for objective, m in manifest["objectives"].items():
        lines += [
            "  - task: {type: cross-modal-retrieval, name: "
            f"{_yaml(f'cross-modal retrieval, objective {objective}')}}}",
            dataset,
            "    metrics:",
        ]
        for direction, key in (("image->text", "i2t_map"), ("text->image", "t2i_map"), ("average", "avg_map")):
            lines.append(
                f"    - {{type: map, name: {_yaml(f'mAP@all {direction} ({objective})')}, value: {m[key]:.4f}}}"
            )
    return lines + ["---"]


def _features_line(manifest: dict, zero: str) -> str:
    bb = manifest["backbone"]
    if bb is not None:
        return f"- **Backbone** (frozen): `{bb['spec']}`, {bb['feature_dim']}-d features.{zero}"
    f = manifest["features"]
    return (f"- **Features**: as the data ships them (`{f['from']}`), {f['image_dim']}-d for images and "
            f"{f['text_dim']}-d for texts. No backbone: the bundle answers queries by gallery item "
            f"(Compare, maps, leaderboard), not new texts or pictures.")


def _seed_cell(m: dict) -> str:
    seeds = m.get("seeds")
    if seeds:
        interval = f" [{seeds['ci_low']:.3f}, {seeds['ci_high']:.3f}]" if "ci_low" in seeds else ""
        return f" {seeds['mean']:.3f} ± {seeds['std']:.3f}{interval} |"
    return " — (the backbone alone: no training seed) |" if m.get("kind") == "zero-shot" else " — |"


def _setting_cell(m: dict) -> str:
    """' margin=1, form=1 (chosen on validation; the paper's: margin=0.2, form=0) |' or ' — |'."""
    tuning = m.get("tuning") or {}
    from cmr_demo.train.tuning import settings_text as words
    if not tuning.get("settings"):
        return " — |"
    if tuning["settings"] == tuning.get("paper_settings"):
        return f" {words(tuning['settings'])} (the paper's) |"
    return f" {words(tuning['settings'])} (chosen on validation; the paper's: {words(tuning['paper_settings'])}) |"


def _served_line(manifest: dict, seeded: list[dict]) -> list[str]:
    lines = []
    if seeded:
        lines.append(f"The first three columns, and the heads the app serves, are seed {seeded[0]['served']}'s.")
    if any(m.get("kind") == "zero-shot" for m in manifest["objectives"].values()):
        lines.append("`zero-shot` ranks by the frozen backbone's own cosine similarity, with no heads: the reference "
                     "point that shows what the supervised heads add.")
    return lines + ([""] if lines else [])


def render_card(manifest: dict) -> str:
    """README.md text for the bundle described by `manifest` (its `files` entry is not used)."""
    data, about, name = manifest["data"], manifest.get("about", {}), manifest.get("name", "bundle")
    seeded = [m["seeds"] for m in manifest["objectives"].values() if m.get("seeds")]
    order = lambda kv: -(kv[1].get("seeds") or {}).get("mean", kv[1]["avg_map"])  # noqa: E731 (the mean over seeds)
    rows = [
        f"| `{o}` | {m['i2t_map']:.3f} | {m['t2i_map']:.3f} | {m['avg_map']:.3f} |"
        + (_seed_cell(m) if seeded else "")
        + _setting_cell(m)
        for o, m in sorted(manifest["objectives"].items(), key=order)
    ]
    header = "| objective | image->text mAP | text->image mAP | average |" + (
        f" average over {seeded[0]['n']} training seeds (mean ± sample std [95 % interval]) |" if seeded else "") + \
        " setting |"
    zs = about.get("zero_shot")
    zero = (f" Zero-shot, the backbone alone classifies {zs['accuracy']:.1%} of {zs['on']} with "
            f"\"{zs['template']}\" prompts (chance {zs['chance']:.0%}).") if zs else ""
    body = [
        f"# {name}: a CLIP4CMR bundle", "",
        f"{about.get('description') or 'Data: `' + data['spec'] + '`.'}", "",
        f"- **Gallery**: the test split of `{data['spec']}`, {data['gallery_items']} items, "
        f"{len(data['class_names'])} classes ({', '.join(data['class_names'])}).",
        f"- **Relevance**: {about.get('relevance', 'same class as the query')}; mAP over the whole gallery (mAP@all).",
        _features_line(manifest, zero),
        "- **Heads**: one projection head per modality into a common space, trained with class labels under "
        "each objective (CLIP4CMR, Zeng & Mao, ICMR 2022).", "",
        header, "|---|---|---|---|" + ("---|" if seeded else "") + "---|", *rows, "", *_served_line(manifest, seeded),
        f"Built {manifest['created']} on {manifest.get('machine', 'an unrecorded machine')} with:", "",
        "```", " ".join(manifest["command"]), "```", "",
        "Serve it: `python app.py --bundle <this folder>`; check it: `python -m cmr_demo.bundle verify <this "
        "folder>`.", "",
        "## License", "", CODE_LICENSE + " " + (about.get("license") or "The data's own terms apply to the gallery, "
                                                                      "features and embeddings derived from it."), "",
        "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(front_matter(manifest) + [""] + body)
