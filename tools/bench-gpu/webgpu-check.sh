#!/bin/bash
# WebGPU on the device machine (issues 3 and 8), with the standard Node bundle of ../shared/device/pack.sh
# (onnxruntime-node 1.30, whose WebGPU EP runs where the CUDA bundle's 1.29 crashed), one call:
#
#   run carry [".devcarry", ".devcarry-bench"]: source .devcarry/prelude.sh; BENCH_BUDGET_S=200 bash tools/bench-gpu/webgpu-check.sh
#
#   0. test/runtime/webgpu.test.ts on the real adapter (tiny models, two workers at once, kept conditionings)
#   1. the demo models (models/demo, 32×32 pixel space): the cross-domain graph, 50 steps, on cpu and on webgpu;
#      the final latents of the three samplers compared between the two providers
#   2. if the budget leaves time: SD-1.5-shaped fp16 models made on the GPU (make_models.py), then run.ts with
#      --provider webgpu at BENCH_WEBGPU_STEPS (20) against BENCH_WEBGPU_REF (a 20-step PyTorch reference from
#      device.sh on the same seeded weights), cut by `timeout` at the budget
# $OUT gets webgpu.log, summary.txt, demo-cpu.json, demo-webgpu.json, fusegraph-webgpu.json.
# Size: the working tree (~17 MB with models/demo) plus pack.sh's .devcarry (~52 MB) is over the 64 MiB of a call;
# run.ts needs no better-sqlite3, so repack without it first (~24 MB of node_modules instead of ~29):
#   mkdir -p /tmp/nm && tar -C /tmp/nm -xJf .devcarry/node_modules.tar.xz \
#     && tar -C /tmp/nm -cf - --exclude=node_modules/better-sqlite3 node_modules | xz -T0 -9 > .devcarry/node_modules.tar.xz
set -uo pipefail
OUT=${OUT:-/tmp/fg-webgpu-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/webgpu.log") 2>&1
start=$SECONDS
budget=${BENCH_BUDGET_S:-200}
wsteps=${BENCH_WEBGPU_STEPS:-20}
ref=${BENCH_WEBGPU_REF:-tools/bench-gpu/results/2026-11-26-h100/reference-webgpu.json}
elapsed() { echo $((SECONDS - start)); }
say() { echo "[webgpu-check +$(elapsed)s] $*"; }
ldconfig -p | grep -q libvulkan.so.1 || say "no libvulkan.so.1: the WebGPU EP will find no adapter"

say "engine WebGPU tests (two models' workers at once; conditioning kept in GPU memory)"
# The tests' tiny models take the real CLIP tokenizer from ../shared, which does not travel to the device.
if [ ! -d ../shared/fixtures/clip-tokenizer ]; then mkdir -p ../shared/fixtures && ln -s "$PWD/.devcarry-bench/tokenizer" ../shared/fixtures/clip-tokenizer; fi
{ echo "== test/runtime/webgpu.test.ts =="; timeout 120 node --import tsx --test test/runtime/webgpu.test.ts 2>&1 | grep -E '^# (tests|pass|fail|cancelled|skipped|webgpu)|ok [0-9]'; echo; } | tee -a "$OUT/summary.txt"

demo=/tmp/fg-demo-bench
demo_providers=${BENCH_DEMO_PROVIDERS-cpu webgpu}
mkdir -p "$demo"
ln -sfn "$PWD/models/demo/general" "$demo/general"
ln -sfn "$PWD/models/demo/cartoon" "$demo/expert"
for p in $demo_providers; do
  say "demo models on $p"
  timeout 90 node --import tsx tools/bench-gpu/run.ts --models "$demo" --provider "$p" --steps 50 --size 32 --raw-calls 0 \
    --label "demo $p" --out "/tmp/fg-demo-$p" --json "$OUT/demo-$p.json" | tee "/tmp/demo-$p.txt"
  { echo "== demo models, $p =="; cat "/tmp/demo-$p.txt"; echo; } >> "$OUT/summary.txt"
done
[ -d /tmp/fg-demo-cpu ] && [ -d /tmp/fg-demo-webgpu ] && node --import tsx --input-type=module -e "
  const { readdirSync, readFileSync } = await import('node:fs');
  const { decodeNpy } = await import('./server/sd/npy.ts');
  for (const f of readdirSync('/tmp/fg-demo-cpu').filter((n) => n.endsWith('.npy')).sort()) {
    const a = decodeNpy(readFileSync('/tmp/fg-demo-cpu/' + f)).data, b = decodeNpy(readFileSync('/tmp/fg-demo-webgpu/' + f)).data;
    let max = 0, ref = 0;
    for (let i = 0; i < a.length; i++) { max = Math.max(max, Math.abs(a[i] - b[i])); ref = Math.max(ref, Math.abs(a[i])); }
    console.log('demo latent ' + f + ': webgpu vs cpu max |diff| ' + max.toExponential(3) + ' (max |cpu| ' + ref.toFixed(3) + ')');
  }" | tee -a "$OUT/summary.txt"

left=$((budget - $(elapsed)))
if [ "$wsteps" -gt 0 ] && [ "$left" -gt 110 ] && [ -f "$ref" ]; then
  M=/tmp/fg-bench-models
  say "make_models (${left}s of the budget left)"
  pids=()
  for name in general expert; do
    python3 tools/bench-gpu/make_models.py --out "$M" --dtype fp16 --device cuda --tokenizer .devcarry-bench/tokenizer --only "$name" > "/tmp/make-$name.log" 2>&1 &
    pids+=($!)
  done
  # Not a bare `wait`: that also waits for the `exec > >(tee …)` above, which never ends (the whole call hung there).
  for pid in "${pids[@]}"; do wait "$pid"; done
  grep -h -E '^  (general|expert):' /tmp/make-general.log /tmp/make-expert.log
  left=$((budget - $(elapsed)))
  say "FuseGraph webgpu, $wsteps steps (${left}s left)"
  timeout --signal=INT "$((left > 20 ? left : 20))" node --import tsx tools/bench-gpu/run.ts --models "$M" --provider webgpu --steps "$wsteps" \
    --size 512 --torch-result "$ref" --out /tmp/fg-webgpu --json "$OUT/fusegraph-webgpu.json" --raw-calls 4 \
    | tee /tmp/table-webgpu.txt
  { echo "== WebGPU EP, SD-1.5-shaped models ($wsteps steps) =="; cat /tmp/table-webgpu.txt; } >> "$OUT/summary.txt"
else
  say "SD-size WebGPU skipped (${left}s of the budget left)"
fi
say "done"
sleep 1
