"""torch.onnx.export of ldm_reference's UNetModel with the weights of an SD-1 checkpoint: the baseline that
`npm run bench:checkpoint` (tools/bench/checkpoint.ts) times FuseGraph's built UNet against.

    /usr/bin/python3 tools/checkpoint-reference/export_unet_onnx.py CHECKPOINT.safetensors OUT_DIR

Reads `model.diffusion_model.*` from the safetensors file (any float dtype → float32), infers model_channels and
context_dim from the tensors (the rest is SD-1's layout: channel_mult [1,2,4,4], 2 res blocks, attention at the
first three levels, 8 heads, conv proj), and writes OUT_DIR/unet.onnx, opset 17, float32, with diffusers' I/O
(sample [b,4,h,w], timestep float32 [b], encoder_hidden_states [b,seq,ctx] → out_sample) and dynamic batch,
height, width and sequence, as diffusers' convert_stable_diffusion_checkpoint_to_onnx.py exports it. A full-size
UNet is 3.4 GB in float32, over protobuf's 2 GB, so the weights go to external data files beside unet.onnx.
The module is built on the `meta` device and materialised once (to_empty), so the weights are held one time.
"""
import json
import os
import struct
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ldm_reference as L  # noqa: E402
from make_sd15_random import on_meta  # noqa: E402

PREFIX = "model.diffusion_model."
NP_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}


def read_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ckpt, out_dir = sys.argv[1], sys.argv[2]
    torch.set_num_threads(2)
    t0 = time.time()
    header, base = read_header(ckpt)
    mm = np.memmap(ckpt, dtype=np.uint8, mode="r")

    def tensor(name):
        e = header[name]
        a, b = e["data_offsets"]
        return torch.from_numpy(np.frombuffer(mm[base + a:base + b], dtype=NP_DTYPES[e["dtype"]]).astype(np.float32).reshape(e["shape"]))

    mc = header[PREFIX + "input_blocks.0.0.weight"]["shape"][0]
    ctx = header[PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"]["shape"][1]
    cfg = dict(in_channels=4, out_channels=4, model_channels=mc, attention_resolutions=(4, 2, 1), num_res_blocks=2,
               channel_mult=(1, 2, 4, 4), num_heads=8, num_head_channels=-1, transformer_depth=1, context_dim=ctx,
               use_linear_in_transformer=False)
    unet = on_meta(lambda: L.UNetModel(**cfg)).to_empty(device="cpu").eval()
    own = unet.state_dict()
    wanted = {k[len(PREFIX):] for k in header if k.startswith(PREFIX)}
    if wanted != set(own):
        sys.exit(f"key mismatch: missing {sorted(set(own) - wanted)[:5]}, unexpected {sorted(wanted - set(own))[:5]}")
    with torch.no_grad():
        for k, p in own.items():
            p.copy_(tensor(PREFIX + k))
    t_load = time.time() - t0

    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "unet.onnx")
    sample = torch.randn(2, 4, 32, 32)
    timestep = torch.tensor([500.0, 500.0])
    context = torch.randn(2, 77, ctx)
    t1 = time.time()
    with torch.no_grad():
        torch.onnx.export(
            unet, (sample, timestep, context), out, opset_version=17, do_constant_folding=True,
            input_names=["sample", "timestep", "encoder_hidden_states"], output_names=["out_sample"],
            dynamic_axes={"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
                          "encoder_hidden_states": {0: "batch", 1: "sequence"},
                          "out_sample": {0: "batch", 2: "height", 3: "width"}},
        )
    t_export = time.time() - t1
    files = os.listdir(out_dir)
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in files)
    print(json.dumps({"out": out, "model_channels": mc, "context_dim": ctx, "load_s": round(t_load, 1),
                      "export_s": round(t_export, 1), "files": len(files), "bytes": total,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
