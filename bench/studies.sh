#!/usr/bin/env bash
# The paper's studies as recorded in the README: on Wikipedia's original features and on the default world.
#   bash bench/studies.sh WIKIPEDIA_DIR [DEVICE=cpu] [JOBS=1]
# Writes bench/results/study/{wikipedia,webshapes}/{imbalance,sensitivity}.{csv,json,html} (+ .png with kaleido).
# On one GPU, JOBS=8 runs eight trainings at once (small heads leave the GPU mostly idle); on a CPU use
# JOBS <= cores / 2. Each study records its own date, machine and command in its .json.
# Every objective trains at the setting its embedded bundle chose on validation (--settings-from; bundle build tunes
# each objective's margin, scale or temperature), so a study compares objectives each at its best, not at the
# official code's settings; the heads are the bundles' (256-d common space).
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
world=(--data webshapes:4000 --backbone "$tiny" --embed-dim 256 --settings-from assets/demo)  # the default bundle's

wikipedia=(--data "wikipedia:$wiki" --standardize --embed-dim 256 --settings-from assets/wikipedia)
$py -m cmr_demo.experiments.study sensitivity "${wikipedia[@]}" --objectives pcl,ce,tl "${common[@]}" \
    --param embed_dim=128,256,512,1024 "${sweep[@]}" --out bench/results/study/wikipedia
$py -m cmr_demo.experiments.study imbalance "${wikipedia[@]}" --objectives cl,ml,tl,lrl,ce,pcl --modality both \
    "${common[@]}" --out bench/results/study/wikipedia
# one extraction first, so that parallel runs read the feature cache instead of all extracting at once
$py -m cmr_demo.backbone.extract --data webshapes:4000 --backbone "$tiny" --device "$device" --quiet
# the paper's six objectives, both modalities, 3 seeds (2 CPU cores, --jobs 2: about 25 min)
$py -m cmr_demo.experiments.study imbalance "${world[@]}" --objectives cl,ml,tl,lrl,ce,pcl --modality both \
    --fractions 1,0.7,0.5,0.3,0.1 --device "$device" --jobs "$jobs" --seeds 3 --out bench/results/study/webshapes
