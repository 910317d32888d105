#!/usr/bin/env bash
# The paper's studies as recorded in the README: on Wikipedia's original features and on the demo world.
#   bash bench/studies.sh WIKIPEDIA_DIR [DEVICE=cpu] [JOBS=1]
# Writes bench/results/study/{wikipedia,shapes}/{imbalance,sensitivity}.{csv,json,html} (+ .png with kaleido).
# On one GPU, JOBS=8 runs eight trainings at once (small heads leave the GPU mostly idle); on a CPU use
# JOBS <= cores / 2. Each study records its own date, machine and command in its .json.
set -euo pipefail
wiki=${1:?usage: bash bench/studies.sh WIKIPEDIA_DIR [DEVICE] [JOBS]}
device=${2:-cpu}
jobs=${3:-1}
py=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
common=(--device "$device" --jobs "$jobs" --seeds 3)
sweep=(--param hidden_dim=128,256,512 --param batch_size=100,300,1000 --param lr=1e-4,3e-4,1e-3
       --param margin=0.1,0.2,0.5,1.0 --param temperature=0.1,0.3,1,3)
tiny=shapes-rn:assets/demo/backbone/backbone.safetensors
shapes=(--data shapes:3000,seed=1 --backbone "$tiny" --embed-dim 256)  # the demo bundle's data and settings

$py -m cmr_demo.experiments.study sensitivity --data "wikipedia:$wiki" --standardize --objectives pcl,ce,tl "${common[@]}" \
    --param embed_dim=128,512,1024 "${sweep[@]}" --out bench/results/study/wikipedia
$py -m cmr_demo.experiments.study imbalance --data "wikipedia:$wiki" --standardize --objectives pcl,ce,lrl,tl --modality both \
    "${common[@]}" --out bench/results/study/wikipedia
# one extraction first, so that parallel runs read the feature cache instead of all extracting at once
$py -m cmr_demo.backbone.extract --data shapes:3000,seed=1 --backbone "$tiny" --device "$device" --quiet
# one seed on the demo world, as recorded (2026-11-30, 2 CPU cores): with the new backbone every run lands
# within a few thousandths of 1.0 mAP, so seeds add little but time
$py -m cmr_demo.experiments.study imbalance "${shapes[@]}" --objectives pcl,ce,lrl,tl --modality both --device "$device" \
    --jobs "$jobs" --seeds 1 --out bench/results/study/shapes
$py -m cmr_demo.experiments.study sensitivity "${shapes[@]}" --objectives pcl,tl --device "$device" --jobs "$jobs" --seeds 1 \
    --param embed_dim=64,256,1024 --param hidden_dim=128,256,512 --param lr=1e-4,3e-4,1e-3 \
    --param margin=0.1,0.2,0.5,1.0 --param temperature=0.1,0.3,1,3 --out bench/results/study/shapes
