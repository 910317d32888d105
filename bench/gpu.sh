#!/usr/bin/env bash
# Every GPU measurement in one call: a lent GPU is held by the minute, so one command does it all.
#   bash bench/gpu.sh OUT_DIR WIKIPEDIA_DIR
# 1. extraction: ViT-B-32 (random weights; published ones need the hub) and the tiny shapes-rn, bf16,
#    from decoded images and from JPEG files, 0/8/15 decoding workers, beside model-only and FLOP ceilings;
# 2. head training on Wikipedia on the GPU, every objective to early stop (bench/train_speed.py);
# 3. the training CLI end to end on 20,000 shapes pairs (extraction + heads): five objectives in bf16,
#    pcl in fp32, and pcl with ViT-B-32 as the backbone.
# Writes OUT_DIR/{extract_gpu,train_speed_gpu}.{json,md} and OUT_DIR/train_gpu.md; log on stdout.
# About 10 minutes on one H200 (the training runs are launch-bound: small heads, many small kernels).
set -euo pipefail
out=${1:?usage: bash bench/gpu.sh OUT_DIR WIKIPEDIA_DIR}
wiki=${2:?usage: bash bench/gpu.sh OUT_DIR WIKIPEDIA_DIR}
py=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 CMR_CACHE_DIR=${CMR_CACHE_DIR:-/tmp/cmr_gpu_cache}
tiny=shapes-rn:assets/demo/backbone/backbone.safetensors
work=runs/gpu  # gitignored
rm -rf "$work"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
$py -c "import torch, os; print('torch', torch.__version__, torch.cuda.get_device_name(0), os.cpu_count(), 'cores')"

$py bench/extract.py --device cuda --precision bf16 --backbones ViT-B-32:random "$tiny" --images 8192 \
    --batch-size 256 --num-workers 0 8 15 --sources memory files --model-reps 20 --out "$out/extract_gpu"

$py bench/train_speed.py --data "$wiki" --device cuda --profile '' --out "$out/train_speed_gpu"

# the CLI's own tables, appended as each run ends (a run cut short by the call's limit keeps the others)
log="$out/train_gpu.md"
echo "Training CLI on the GPU, $(date '+%Y-%m-%d %H:%M'), $(nvidia-smi --query-gpu=name --format=csv,noheader)" > "$log"
train() {
    echo -e "\n\`python -m cmr_demo.train $*\`\n\n\`\`\`" >> "$log"
    local t0=$SECONDS
    $py -m cmr_demo.train "$@" --quiet 2>&1 | grep -v "^WARNING:root:No pretrained" | tee -a "$log"
    echo "wall $((SECONDS - t0)) s" | tee -a "$log"
    echo '```' >> "$log"
}
for prec in bf16 fp32; do
    objectives=$([ $prec = bf16 ] && echo pcl,ce,lrl,tl,proxy-nca || echo pcl)
    train --data shapes:20000,seed=2 --backbone "$tiny" --device cuda --precision $prec --objective $objectives \
        --num-workers 12 --extract-batch-size 256 --embed-dim 256 --out "$work/shapes-rn-$prec"
done
train --data shapes:20000,seed=2 --backbone ViT-B-32:random --device cuda --precision bf16 --objective pcl \
    --num-workers 12 --extract-batch-size 256 --embed-dim 256 --out "$work/vit-b-32-bf16"
