"""The speed and scale blocks of docs/results.md (training, extraction, search, the app, the soak), and the helpers
every block shares; `bench/report.py` puts them together."""
from __future__ import annotations

import json
from pathlib import Path


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _provenance(date: str | None, machine: str | None, command: str | None) -> str:
    parts = [p for p in (date, machine) if p]
    return f"*{', '.join(parts)}; `{command}`*" if command else f"*{', '.join(parts)}*"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _ms(x: float) -> str:
    return f"{x / 1000:.1f} s" if x >= 1000 else f"{x:.0f} ms"


# --- one function per block; each returns markdown, or None when its result file is absent ---


def train_speed(results: Path) -> str | None:
    out = []
    for label, r in (
        ("2 CPU cores", _load(results / "train_speed.json")),
        ("GPU", _load(results / "train_speed_gpu.json")),
    ):
        if r is None:
            continue
        target = 5.0
        lines = [f"**{label}**: " + _provenance(r["date"], r["machine"], r["command"]), "",
                 "| objective | wall s | train s | epochs | ms/epoch | pairs/s | avg mAP | <= 5 s |",
                 "|---|---|---|---|---|---|---|---|"]
        for name, o in r["ours"].items():
            lines.append(f"| `{name}` | {o['wall_s']:.1f} | {o['train_s']:.1f} | {o['epochs']} | "
                         f"{o['train_s'] / o['epochs'] * 1000:.0f} | {r['n_train'] * o['epochs'] / o['train_s']:,.0f} "
                         f"| "
                         f"{o['avg_map']:.3f} | {_verdict(o['wall_s'] <= target)} |")
        n = r["naive"]
        lines += ["", f"Peer in the same run: a naive loop (Python batching, per-query numpy mAP on the test split "
                      f"every epoch, CPU) trains the same heads for the same {n['epochs']} epochs in "
                      f"{n['train_s']:.1f} s ({n['train_s'] / n['epochs'] * 1000:.0f} ms/epoch)."]
        if r.get("process"):
            p = r["process"]
            lines += ["", f"A fresh `python -m cmr_demo.train` process for `{p['objective']}`: {p['wall_s']:.1f} s "
                          f"wall, "
                          f"of which importing torch {p['import_torch_s']:.1f} s and torch.optim's first use "
                          f"(it imports torch._dynamo) {p['import_dynamo_s']:.1f} s."]
        if r.get("profile"):
            tree = r["profile"].splitlines()
            tree = tree[next((i + 1 for i, x in enumerate(tree) if x.startswith("Profile at")), 0):]
            lines += ["", f"Where the time of one `{r['profile_objective']}` run goes (pyinstrument, seconds, top of "
                          "the call tree):", "", "```", *[x for x in tree if x.strip()][:26], "```"]
        out.append("\n".join(lines))
    return (
        "\n\n".join(["### Training speed (Wikipedia, one seed, to early stop; `bench/train_speed.py`)", *out])
        if out
        else None
    )


def extraction(results: Path) -> str | None:
    out = []
    for r in (_load(results / "extract.json"), _load(results / "extract_gpu.json")):
        if r is None or "date" not in r:
            continue
        gpu = r.get("bf16_matmul_tflops") is not None
        lines = [_provenance(r["date"], r["machine"], r["command"]), ""]
        if gpu:
            lines += [f"bf16 matrix-product rate measured in the same run: {r['bf16_matmul_tflops']:.0f} TFLOP/s.", ""]
        lines += [
            "| backbone | precision | source | workers | images/s | model only | "
            + ("FLOP floor | " if gpu else "")
            + "texts/s |",
            "|---|---|---|---|---|---|" + ("---|" if gpu else "") + "---|",
        ]
        for x in r["rows"]:
            lines.append(f"| `{x['backbone'].split(':')[0]}` | {x['precision']} | {x['source']} | {x['num_workers']} | "
                         f"{x['images_per_s']:,.0f} | {x['model_only_images_per_s']:,.0f} | "
                         + (f"{x['flop_floor_images_per_s']:,.0f} | " if gpu else "") + f"{x['texts_per_s']:,.0f} |")
        if gpu:
            vit = [x["images_per_s"] for x in r["rows"] if x["backbone"].startswith("ViT-B-32")]
            if vit:
                lines += ["", f"Goal: ViT-B-32, bf16, one H200, >= {r['gpu_goal_images_per_s']:,} images/s: best "
                              f"{max(vit):,.0f}, {_verdict(max(vit) >= r['gpu_goal_images_per_s'])}."]
        out.append("\n".join(lines))
    return "\n\n".join(["### Feature extraction (`bench/extract.py`)",
                        "Images/s through the whole pipeline (decode, preprocess, model) beside the same network on "
                        "ready-made tensors (model only) and, on a GPU, its FLOPs over the measured matrix rate.",
                        *out]) if out else None


def search(results: Path) -> str | None:
    r = _load(results / "search.json")
    if r is None:
        return None
    bw = r["bandwidth_bytes_per_s"]["1"]
    t = r["targets"]
    lines = ["| N x d | method | threads | p50 ms | p99 ms | recall@10 | floor ms | p50 / floor |",
             "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    largest = {d: max(x["n"] for x in r["rows"] if x["d"] == d) for d in {x["d"] for x in r["rows"]}}
    for row in r["rows"]:
        if row["n"] != largest[row["d"]]:
            continue
        floor = (f"{row['floor_ms']:.2f} | {row['over_floor']:.2f}x" if "floor_ms" in row else "- | -")
        lines.append(f"| {row['n']:,} x {row['d']} | {row['method']} | {row['threads']} | {row['p50_ms']:.2f} | "
                     f"{row['p99_ms']:.2f} | {row['recall_at_10']:.3f} | {floor} |")
    big = [x for x in r["rows"] if x["n"] == 1_000_000 and x["d"] == 256]
    fast = [x for x in big if x["p50_ms"] <= t["p50_ms_at_1M_x_256"] and x["recall_at_10"] >= t["recall_at_10"]]
    flat = next((x for x in big if x["method"] == "flat"), None)
    if big:
        verdicts.append(f"1M x 256, single query p50 <= {t['p50_ms_at_1M_x_256']:g} ms at recall@10 >= "
                        f"{t['recall_at_10']:g}: {_verdict(bool(fast))}"
                        + (f" ({', '.join(x['method'] for x in fast)})" if fast else "") + ".")
    if flat:
        ratio = flat["over_floor"]
        verdicts.append(f"Exact flat scan within {t['exact_over_floor']:g}x of its memory-bandwidth floor at 1M x 256: "
                        f"{ratio:.2f}x, {_verdict(ratio <= t['exact_over_floor'])}.")
    m = r["machine"]
    return "\n".join(
        [
            "### Gallery search (`bench/search.py`)",
            "",
            _provenance(r["started"], f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB", r["command"]),
            "",
            f"Memory bandwidth measured in the same run: {bw / 1e9:.1f} GB/s on one thread; the floor of an "
            "exact scan is N x d x 4 bytes over the bandwidth at the row's thread count. The largest N per d "
            "below; every size, build times, batch throughput and memory in `bench/results/search.md`.",
            "",
            *lines,
            "",
            " ".join(verdicts),
        ]
    )


def app(results: Path) -> str | None:
    r = _load(results / "app.json")
    if r is None:
        return None
    g, lv = r["goals"], r["levels"]
    lines = ["| endpoint | " + " | ".join(f"{c} client{'s' * (int(c) > 1)} p50 / p95" for c in lv) + " |",
             "|---|" + "---|" * len(lv)]
    for ep in next(iter(lv.values())):
        lines.append(f"| `{ep}` | " + " | ".join(f"{_ms(lv[c][ep]['p50_ms'])} / {_ms(lv[c][ep]['p95_ms'])}" for c in lv)
                     + " |")
    errors = sum(e["errors"] for c in lv.values() for e in c.values())
    requests = sum(e["requests"] for c in lv.values() for e in c.values())
    at8 = lv.get("8", {}).get("search_text")
    goals = [
        f"ready {r['ready_s']:.1f} s (goal <= {g['ready_s']:g} s: {_verdict(r['ready_s'] <= g['ready_s'])})",
        f"peak RSS {r['peak_rss_mb']:,.0f} MB (goal <= {g['rss_mb']:,.0f} MB: "
        f"{_verdict(r['peak_rss_mb'] <= g['rss_mb'])})",
        f"{errors} errors in {requests:,} requests",
    ]
    if at8:
        ok = at8["p50_ms"] <= g["search_text_p50_ms_at_8"] and at8["p95_ms"] <= g["search_text_p95_ms_at_8"]
        goals.append(f"search_text at 8 clients p50 / p95 {at8['p50_ms']:.0f} / {at8['p95_ms']:.0f} ms (goal "
                     f"{g['search_text_p50_ms_at_8']:g} / {g['search_text_p95_ms_at_8']:g} ms: {_verdict(ok)})")
    rest = r.get("rest_search_text", {})
    if rest:
        goals.append("peer in the same run, search_text through gradio's plain REST route (httpx) p50 / p95: "
                     + ", ".join(f"{x['p50_ms']:.0f} / {x['p95_ms']:.0f} ms at {c} client{'s' * (int(c) > 1)}"
                                 for c, x in rest.items()))
    api_lines = []
    api, floor = r.get("api_search_text"), r.get("service_floor")
    if api and floor:
        api_lines = ["", "JSON API, `POST /api/v1/search/text`, every text new (asyncio httpx clients with keep-alive, "
                     "same machine as the server), beside the service's own time measured in the same run:", "",
                     "| clients | requests/s | p50 ms | p95 ms | errors |", "|---|---|---|---|---|"]
        api_lines += [f"| {c} | {x['rps']:,.0f} | {x['p50_ms']:.1f} | {x['p95_ms']:.1f} | {x['errors']} |"
                      for c, x in api.items()]
        a8, a32 = api.get("8"), api.get("32")
        verdicts = []
        if a8:
            ok = a8["rps"] >= g["api_rps_at_8"] and a8["p50_ms"] <= g["api_p50_ms_at_8"] and a8["errors"] == 0
            verdicts.append(f"8 clients {a8['rps']:,.0f} requests/s, p50 {a8['p50_ms']:.1f} ms (goal >= "
                            f"{g['api_rps_at_8']:g}/s, p50 <= {g['api_p50_ms_at_8']:g} ms: {_verdict(ok)})")
        if a32:
            verdicts.append(f"32 clients p95 {a32['p95_ms']:.0f} ms (goal <= {g['api_p95_ms_at_32']:g} ms: "
                            f"{_verdict(a32['p95_ms'] <= g['api_p95_ms_at_32'] and a32['errors'] == 0)})")
        verdicts.append(f"floor: the service alone takes {floor['ms_per_search']:.2f} ms per new-text search "
                        f"({1000 / floor['ms_per_search']:,.0f}/s on one thread), "
                        f"{floor['ms_per_search_batched_8']:.2f} ms "
                        f"when 8 texts share a backbone call")
        api_lines += ["", "; ".join(verdicts) + "."]
    return "\n".join(["### The app (`bench/app.py`)", "", _provenance(r["date"], r["machine"], r["command"]), "",
                      "gradio_client sessions running on the same machine as the server, each sending the four main "
                      "endpoints in turn.", "", *lines, "", "; ".join(goals) + ".", *api_lines])


def soak(results: Path) -> str | None:
    """bench/soak.py writes its own table (targets beside figures) next to its JSON; shown as written."""
    md = results / "soak.md"
    return f"### Soak: 32 clients, every endpoint and uploads (`bench/soak.py`)\n\n{md.read_text().strip()}" \
        if md.exists() else None
