#!/bin/bash
# Software Vulkan (Mesa lavapipe 25.0.7 from bookworm-backports) for onnxruntime-node's WebGPU EP (Dawn), unpacked
# under $DEST without touching the system. Then: source $DEST/env.sh
# Bookworm's own Mesa 22.3 lavapipe is NOT enough: Dawn rejects it ("Vulkan shaderUniform*ArrayDynamicIndexing required").
set -euo pipefail
DEST=${1:-/tmp/lavapipe}
mkdir -p "$DEST"/{debs,root,lists/main/partial,lists/bpo/partial}
DEST=$(cd "$DEST" && pwd)
K=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [signed-by=$K] http://deb.debian.org/debian bookworm main" > "$DEST/lists/main.list"
echo "deb [signed-by=$K] http://deb.debian.org/debian bookworm-backports main" > "$DEST/lists/bpo.list"
apt_() { local l=$1; shift; apt-get -q -oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists="$DEST/lists/$l" \
  -oDir::Etc::SourceList="$DEST/lists/$l.list" -oDir::Etc::SourceParts=/dev/null -oDebug::NoLocking=1 "$@"; }
apt_ main update >/dev/null; apt_ bpo update >/dev/null
cd "$DEST/debs"
apt_ bpo download mesa-vulkan-drivers libdrm2 libdrm-amdgpu1 libdrm-common
apt_ main download libvulkan1 vulkan-tools libelf1 libexpat1 libllvm15 libwayland-client0 libx11-xcb1 libx11-6 libx11-data \
  libxcb-dri3-0 libxcb-present0 libxcb-randr0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0 \
  libxshmfence1 libzstd1 libedit2 libffi8 libtinfo6 libxml2 libz3-4 libicu72 liblzma5
for d in *.deb; do dpkg -x "$d" "$DEST/root"; done
L=$DEST/root/usr/lib/x86_64-linux-gnu
sed "s#\"library_path\": \".*\"#\"library_path\": \"$L/libvulkan_lvp.so\"#" "$DEST/root/usr/share/vulkan/icd.d/lvp_icd.json" > "$DEST/lvp_icd.json"
cat > "$DEST/env.sh" <<EOT
export LD_LIBRARY_PATH=$L\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export VK_ICD_FILENAMES=$DEST/lvp_icd.json
export VK_DRIVER_FILES=$DEST/lvp_icd.json
EOT
. "$DEST/env.sh"
"$DEST/root/usr/bin/vulkaninfo" --summary 2>/dev/null | grep -E 'deviceName|driverInfo'
echo "ok: source $DEST/env.sh"
