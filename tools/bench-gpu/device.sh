#!/bin/bash
# Device half of the GPU benchmark (issue 8). Runs on the device machine in the repo root, in the LAST call of
# tools/bench-gpu/device-sequence.md, after `source .devcarry-cuda/final/prelude.sh` (node + onnxruntime-node 1.29.0
# with the CUDA provider). Carries: .devcarry-cuda/final and .devcarry-bench (tokenizer, Vulkan loader .debs).
#
#   1. make_models.py: general + expert, SD-1.5-shaped, fp16, exported on the GPU (in parallel); never carried
#   2. reference_sampler.py: PyTorch autocast reference, attention math (as the original) and sdpa, 100 steps
#   3. run.ts --provider cuda: FuseGraph, 100 steps, 512x512, three outputs, run twice (the second is reported),
#      plus a serialised run (overlap check) and a raw onnxruntime-node UNet probe; prints the table
#   4. run.ts --provider webgpu (if the time budget allows): fewer steps (BENCH_WEBGPU_STEPS, default 20) against a
#      reference run at the same steps, plus raw UNet probes with the default and NHWC layouts
#
# Everything lands in $OUT (at most 8 files, as the device tool returns): device.log (all output), summary.txt (the
# tables), reference.json, fusegraph-cuda.json, reference-webgpu.json, fusegraph-webgpu.json.
# Environment: BENCH_BUDGET_S (default 500: seconds this script may use; later steps are skipped past it),
# BENCH_WEBGPU_STEPS (default 20; 0 skips WebGPU), BENCH_STEPS (default 100), BENCH_SIZE (default 512),
# BENCH_WAIT_FILE (the timed steps wait until this file exists, at most until BENCH_TIMED_S (230) before the budget).
# CPU dry run of the same script (how it was tested without a device):
#   OUT=/tmp/dry BENCH_TOKENIZER=../shared/fixtures/clip-tokenizer BENCH_SMALL=1 BENCH_TORCH_DEVICE=cpu BENCH_DTYPE=fp32 BENCH_PROVIDER=cpu BENCH_STEPS=10 BENCH_SIZE=128 \
#   BENCH_WEBGPU_STEPS=0 PY=/usr/bin/python3 bash tools/bench-gpu/device.sh
set -uo pipefail
OUT=${OUT:-/tmp/fg-bench-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device.log") 2>&1
start=$SECONDS
budget=${BENCH_BUDGET_S:-500}
steps=${BENCH_STEPS:-100}
size=${BENCH_SIZE:-512}
wsteps=${BENCH_WEBGPU_STEPS:-20}
tdev=${BENCH_TORCH_DEVICE:-cuda}
dtype=${BENCH_DTYPE:-fp16}
provider=${BENCH_PROVIDER:-cuda}
small=${BENCH_SMALL:+--small}
precision=$([ "$tdev" = cuda ] && echo autocast || echo full)
tok=${BENCH_TOKENIZER:-.devcarry-bench/tokenizer}
M=/tmp/fg-bench-models
export PYTHONUNBUFFERED=1
elapsed() { echo $((SECONDS - start)); }
say() { echo "[device.sh +$(elapsed)s] $*"; }

PY=${PY:-python3}
if ! $PY -c 'import torch' 2>/dev/null; then
  for cand in /opt/torch/.venv/bin/python3 /usr/local/bin/python3; do
    if [ -x "$cand" ] && "$cand" -c 'import torch' 2>/dev/null; then PY=$cand; break; fi
  done
fi
say "python: $PY"
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' || exit 1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader
node --version
node -e "import('onnxruntime-node').then(o => console.log('onnxruntime-node', o.env.versions ? JSON.stringify(o.env.versions) : '?'))"
[ -f "$tok/vocab.json" ] || { say "missing $tok: run tools/bench-gpu/prepare.sh and carry .devcarry-bench"; exit 1; }

# 1. models (general and expert in parallel; each exports its three parts on the GPU)
say "make_models: $dtype general + expert ${small}"
rm -rf "$M"
pids=()
for name in general expert; do
  $PY tools/bench-gpu/make_models.py --out "$M" --dtype "$dtype" --device "$tdev" $small --tokenizer "$tok" --only "$name" \
    > "/tmp/make-$name.log" 2>&1 &
  pids+=($!)
done
fail=0
for pid in "${pids[@]}"; do wait "$pid" || fail=1; done
grep -h -E '^(make_models|  (general|expert)|  legacy)' /tmp/make-general.log /tmp/make-expert.log
[ $fail = 0 ] || { say "make_models failed"; tail -40 /tmp/make-*.log; exit 1; }
du -sh "$M"/*/unet "$M"/*/text_encoder "$M"/*/vae_decoder
node bin/fusegraph.js tokenize "$M/general/tokenizer" "A lion with a crown on his head" > "$M/prompt.json"
node bin/fusegraph.js tokenize "$M/general/tokenizer" "" > "$M/uncond.json"

# Another job may share the GPU until BENCH_WAIT_FILE exists (the demo-model training of issue 7 runs beside the
# export in the same device session); the timed steps start only after it, or after a cap that leaves them time.
if [ -n "${BENCH_WAIT_FILE:-}" ]; then
  cap=$((budget - ${BENCH_TIMED_S:-230}))
  say "waiting for $BENCH_WAIT_FILE (at most until +${cap}s)"
  while [ ! -e "$BENCH_WAIT_FILE" ] && [ "$(elapsed)" -lt "$cap" ]; do sleep 2; done
  [ -e "$BENCH_WAIT_FILE" ] && say "GPU free: $BENCH_WAIT_FILE exists" || say "WARNING: timed steps start while the other job still runs"
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
fi

# 2. PyTorch reference (the models' weights are rebuilt from their seeds and checked against the export)
say "reference_sampler: $precision, attention math + sdpa, $steps steps, ${size}px"
$PY tools/bench-gpu/reference_sampler.py --models "$M" --out /tmp/fg-ref --prompt-ids "$M/prompt.json" --uncond-ids "$M/uncond.json" \
  --device "$tdev" --precision "$precision" --attention both --steps "$steps" --size "$size" || { say "reference failed"; exit 1; }
cp /tmp/fg-ref/reference.json "$OUT/reference.json"

# 3. FuseGraph on CUDA
say "FuseGraph $provider"
node --import tsx tools/bench-gpu/run.ts --models "$M" --provider "$provider" --steps "$steps" --size "$size" --torch-result /tmp/fg-ref/reference.json \
  --out "/tmp/fg-$provider" --json "$OUT/fusegraph-$provider.json" --serial-check --raw-calls 20 | tee "/tmp/table-$provider.txt"
{ echo "== $provider EP =="; cat "/tmp/table-$provider.txt"; } >> "$OUT/summary.txt"

# 4. WebGPU, fewer steps, if the budget allows
left=$((budget - $(elapsed)))
if [ "$wsteps" -gt 0 ] && [ "$left" -gt 150 ]; then
  say "WebGPU: $wsteps steps (${left}s of the budget left)"
  for f in .devcarry-bench/gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done; ldconfig
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  ldconfig -p | grep -q libvulkan.so.1 || say "no libvulkan.so.1 after unpacking the .debs"
  $PY tools/bench-gpu/reference_sampler.py --models "$M" --out /tmp/fg-ref-w --prompt-ids "$M/prompt.json" --uncond-ids "$M/uncond.json" \
    --device "$tdev" --precision "$precision" --attention both --steps "$wsteps" --size "$size" --warmup-steps 1 \
    && cp /tmp/fg-ref-w/reference.json "$OUT/reference-webgpu.json"
  left=$((budget - $(elapsed)))
  timeout --signal=INT "$((left > 30 ? left : 30))" node --import tsx tools/bench-gpu/run.ts --models "$M" --provider webgpu --steps "$wsteps" \
    --size "$size" --torch-result /tmp/fg-ref-w/reference.json --out /tmp/fg-webgpu --json "$OUT/fusegraph-webgpu.json" --raw-calls 8 \
    | tee /tmp/table-webgpu.txt
  { echo; echo "== WebGPU EP ($wsteps steps) =="; cat /tmp/table-webgpu.txt; } >> "$OUT/summary.txt"
else
  say "WebGPU skipped (BENCH_WEBGPU_STEPS=$wsteps, ${left}s of the budget left)"
  echo "WebGPU skipped: ${left}s of the budget left" >> "$OUT/summary.txt"
fi
say "done"
echo; cat "$OUT/summary.txt"
sleep 1  # let tee flush device.log before the call returns
