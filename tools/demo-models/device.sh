#!/usr/bin/env bash
# The ONE device call that makes the demo models (see tools/demo-models/README.md):
#
#   run: bash tools/demo-models/device.sh        (timeout_s 600, no carry needed)
#
# Trains the general and cartoon models jointly (one shared text encoder) for DEMO_SECONDS per model
# (default 190, so 380 s of training), exports both as SD ONNX folders under models/demo/ and leaves in $OUT
# (at most 8 files, each under 16 MiB):
#   demo-models.tar.gz   models/demo/{general,cartoon}/ + *-export-check.json  -> tar -xzf it in the repo root
#   checkpoint.pt        float16 weights of both models: `train.py --export-only` re-exports them anywhere
#   samples_general.png, samples_cartoon.png   20 prompts each (rows: circle, square, triangle, star)
#   fusion.png           "a red star on the left", 8 seeds: general | cartoon | fused with SNB while t > 800, 600, 400, 300, 200
#   metrics.json         training info and colour-mask measurements of every sample
#   proof.tar.gz         all of the above PNGs, the training data grids and metrics.json
#   train.log            the whole log
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/out-demo}"
mkdir -p "$OUT"
LOG="$OUT/train.log"
SECONDS_PER_MODEL="${DEMO_SECONDS:-190}"
# Training stops this many seconds after train.py starts at the latest, leaving time for export and proof images
# inside the 600 s limit of one device command.
DEADLINE="${DEMO_DEADLINE:-430}"
export PYTHONUNBUFFERED=1

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi failed"
  python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  python3 -c "import onnxruntime; print('onnxruntime (python)', onnxruntime.__version__)" 2>/dev/null || echo "no onnxruntime python package: parity is checked later by check-export.ts"
} 2>&1 | tee "$LOG"

PROOF="$(mktemp -d)"
rm -rf models/demo
timeout --signal=TERM --kill-after=10 560 python3 tools/demo-models/train.py \
  --device cuda --seconds "$SECONDS_PER_MODEL" --deadline "$DEADLINE" \
  --out models/demo --samples "$PROOF" "$@" 2>&1 | tee -a "$LOG"
status=${PIPESTATUS[0]}
echo "train.py exit status $status" | tee -a "$LOG"

# Whatever exists comes back, even after a failure: the checkpoint can be exported again on any machine.
[ -f "$PROOF/checkpoint.pt" ] && cp "$PROOF/checkpoint.pt" "$OUT/"
for f in samples_general.png samples_cartoon.png fusion.png metrics.json; do
  [ -f "$PROOF/$f" ] && cp "$PROOF/$f" "$OUT/"
done
if [ -d models/demo/general ] && [ -d models/demo/cartoon ]; then
  tar -czf "$OUT/demo-models.tar.gz" models/demo
  du -sb models/demo/general models/demo/cartoon "$OUT/demo-models.tar.gz" | tee -a "$LOG"
fi
cp "$LOG" "$PROOF/train.log"
(cd "$PROOF" && tar -czf "$OUT/proof.tar.gz" --exclude=checkpoint.pt .)
ls -la "$OUT" | tee -a "$LOG"
exit "$status"
