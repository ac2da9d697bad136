#!/bin/bash
# Local half of the GPU benchmark (issue 8): run on the session's own machine, before any device call.
# Packs what the device call sequence carries (see tools/bench-gpu/device-sequence.md):
#   .devcarry-cuda/{c0..c4,final}  onnxruntime-node 1.29.0 + its CUDA provider in chunks (../shared/device/pack-cuda.sh)
#   .devcarry-bench/tokenizer/     the CLIP tokenizer fixture (../shared does not travel to the device)
#   .devcarry-bench/gl/*.deb       the Vulkan/EGL loader packages the WebGPU execution provider needs
# Both folders go into .git/info/exclude, so only `carry` sends them. Needs network (npm, apt) once; reruns skip
# what exists (delete a folder to rebuild it).
# usage: tools/bench-gpu/prepare.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
shared=${FUSEGRAPH_SHARED:-$root/../shared}
[ -x "$shared/device/pack-cuda.sh" ] || { echo "prepare: $shared/device/pack-cuda.sh not found (set FUSEGRAPH_SHARED)" >&2; exit 1; }
[ -f "$shared/fixtures/clip-tokenizer/vocab.json" ] || { echo "prepare: $shared/fixtures/clip-tokenizer missing" >&2; exit 1; }

grep -qx '/.devcarry-bench/' .git/info/exclude 2>/dev/null || echo '/.devcarry-bench/' >> .git/info/exclude
mkdir -p .devcarry-bench/tokenizer .devcarry-bench/gl
cp "$shared"/fixtures/clip-tokenizer/* .devcarry-bench/tokenizer/
if ! ls .devcarry-bench/gl/libvulkan1_*.deb >/dev/null 2>&1; then
  mkdir -p /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update >/dev/null 2>&1 || true
  (cd .devcarry-bench/gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1) \
    || echo "prepare: Vulkan loader download failed; the WebGPU step will report that" >&2
fi
[ -s .devcarry-cuda/final/node_modules.tar.xz ] && [ -s .devcarry-cuda/c0/part ] || "$shared/device/pack-cuda.sh"

echo "carried sizes:"
du -sh .devcarry-cuda/* .devcarry-bench
tree=$(git ls-files -co --exclude-standard -z | du -ch --files0-from=- 2>/dev/null | tail -1 | cut -f1)
echo "working tree that travels with every call (tracked + untracked-not-ignored): $tree (limit 64 MiB per call with carry)"
echo "next: the device call sequence in tools/bench-gpu/device-sequence.md"
