"""Writes a random Stable Diffusion 1.5 checkpoint at full size: the real LDM key names and shapes, F16, safetensors.

    /usr/bin/python3 tools/checkpoint-reference/make_sd15_random.py OUT.safetensors [--small] [--seed N]

The key list and shapes come from ldm_reference's modules (UNetModel, AutoencoderKL, CLIPTextModel) built on the
`meta` device, so nothing of the model is ever allocated: the header is written first, then each tensor is
generated, converted to float16, written and dropped (peak memory is the largest tensor, the 49408×768 token
embedding). Values keep activations O(1): weights normal/√fan_in, biases 0.05·randn, norm weights 1 + 0.1·randn,
norm biases 0.1·randn, embeddings 0.5·randn (make_fixtures.py's scheme). The LDM schedule buffers (F32) and
`embeddings.position_ids` (I64) are included as in the released files.

--small: the same layout with UNet model_channels 64, CLIP 4 layers, VAE ch 32 (seconds to build and run).
Used by `npm run bench:checkpoint` (tools/bench/checkpoint.ts), which caches the file under /tmp/fusegraph-bench/.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ldm_reference as L  # noqa: E402

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."


def configs(small):
    unet = dict(in_channels=4, out_channels=4, model_channels=64 if small else 320, attention_resolutions=(4, 2, 1),
                num_res_blocks=2, channel_mult=(1, 2, 4, 4), num_heads=8, num_head_channels=-1, transformer_depth=1,
                context_dim=768, use_linear_in_transformer=False)
    vae = dict(embed_dim=4, ch=32 if small else 128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, attn_resolutions=(),
               z_channels=4, double_z=True, in_channels=3, out_ch=3, resolution=256)
    clip = dict(vocab_size=49408, width=768, layers=4 if small else 12, heads=12, max_positions=77)
    return unet, vae, clip


def on_meta(build):
    """Builds a module with every torch.empty on the meta device (torch 1.13 has no default-device context)."""
    real_empty = torch.empty

    def meta_empty(*args, **kwargs):
        kwargs["device"] = "meta"
        return real_empty(*args, **kwargs)

    torch.empty = meta_empty
    try:
        return build()
    finally:
        torch.empty = real_empty


def param_kinds(module, prefix):
    """(full name, shape, init kind, fan_in) for each parameter, in state_dict order."""
    kinds = {}
    for mname, m in module.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                kind = "weight" if pname == "weight" else "bias"
            elif isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                kind = "norm_weight" if pname == "weight" else "norm_bias"
            elif isinstance(m, torch.nn.Embedding):
                kind = "embedding"
            else:
                raise RuntimeError(f"no init rule for {type(m).__name__}.{pname}")
            kinds[full] = (kind, math.prod(p.shape[1:]) if p.dim() > 1 else 1)
    out = []
    for name, t in module.state_dict(keep_vars=True).items():
        if name in kinds:
            out.append((prefix + name, tuple(t.shape), kinds[name][0], kinds[name][1]))
        else:  # buffers (position_ids): real values
            out.append((prefix + name, tuple(t.shape), "buffer", t))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.set_num_threads(2)
    unet_cfg, vae_cfg, clip_cfg = configs(args.small)

    entries = []  # (name, dtype, shape, producer)
    for name, t in L.ldm_schedule_buffers().items():
        entries.append((name, "F32", tuple(t.shape), ("tensor", t)))
    modules = [
        (UNET_PREFIX, lambda: L.UNetModel(**unet_cfg)),
        (VAE_PREFIX, lambda: L.AutoencoderKL(**vae_cfg)),
        (CLIP_PREFIX, lambda: L.CLIPTextModel(**clip_cfg)),
    ]
    for prefix, build in modules:
        module = on_meta(build)
        for name, shape, kind, extra in param_kinds(module, prefix):
            if kind == "buffer":
                entries.append((name, "I64" if extra.dtype == torch.int64 else "F32", shape, ("tensor", extra)))
            else:
                entries.append((name, "F16", shape, (kind, extra)))
        del module

    # Lay out like the safetensors reference: by descending element size, then name; header padded to 8 bytes.
    size = {"F32": 4, "I64": 8, "F16": 2}
    entries.sort(key=lambda e: (-size[e[1]], e[0]))
    header, at = {"__metadata__": {"format": "pt", "generator": "make_sd15_random.py" + (" --small" if args.small else "")}}, 0
    for name, dtype, shape, _ in entries:
        n = math.prod(shape) * size[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + n]}
        at += n
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)

    g = torch.Generator().manual_seed(args.seed)
    tmp = f"{args.out}.{os.getpid()}.tmp"
    t0 = time.time()
    params = 0
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for name, dtype, shape, (kind, extra) in entries:
            if kind == "tensor":
                data = extra.numpy().astype({"F32": "<f4", "I64": "<i8"}[dtype])
            else:
                x = torch.randn(*shape, generator=g)
                if kind == "weight":
                    x.mul_(1.0 / math.sqrt(extra))
                elif kind == "bias":
                    x.mul_(0.05)
                elif kind == "norm_weight":
                    x.mul_(0.1).add_(1.0)
                elif kind == "norm_bias":
                    x.mul_(0.1)
                elif kind == "embedding":
                    x.mul_(0.5)
                data = x.half().numpy()
                params += x.numel()
                del x
            f.write(np.ascontiguousarray(data).tobytes())
            del data
    os.replace(tmp, args.out)
    print(json.dumps({"file": args.out, "tensors": len(entries), "params": params, "bytes": os.path.getsize(args.out),
                      "seconds": round(time.time() - t0, 1), "small": args.small}))


if __name__ == "__main__":
    main()
