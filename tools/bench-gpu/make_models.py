#!/usr/bin/env python3
"""Exports two Stable Diffusion 1.5-shaped ONNX model folders with seeded random weights, for the GPU benchmark.

usage: python3 tools/bench-gpu/make_models.py --out DIR --tokenizer TOKENIZER_DIR [--dtype fp16|fp32]
           [--device cuda|cpu] [--small] [--seed 1] [--only general|expert] [--exporter auto|legacy|dynamo]

Writes DIR/general (weights of --seed) and DIR/expert (--seed + 1), each in the diffusers ONNX layout that FuseGraph
loads (docs: shared/docs/sd-onnx.md §1):

  model_index.json                  OnnxStableDiffusionPipeline-style, plus "_fusegraph_bench"
  scheduler/scheduler_config.json   SD 1.x PNDMScheduler config (DDIM reads the same keys)
  tokenizer/                        copied from --tokenizer (vocab.json, merges.txt, ...)
  text_encoder/model.onnx           input_ids int32 [batch,77] -> last_hidden_state [batch,77,768], pooler_output
  unet/model.onnx                   sample [batch,4,h,w], timestep [batch] (float, diffusers >= 0.8 style: fp16 in
                                    an fp16 export), encoder_hidden_states [batch,77,768] -> out_sample
  vae_decoder/model.onnx            latent_sample [batch,4,h,w] -> sample [batch,3,8h,8w]
  */config.json                     vae_decoder: scaling_factor 0.18215, block_out_channels, latent_channels
  fusegraph_bench.json              variant, seed, dtype, the device type that drew the weights, fingerprints:
                                    reference_sampler.py rebuilds the same PyTorch modules from it

--dtype fp16 (needs --device cuda) makes every float input and output float16, as optimum/Olive fp16 exports do.
The legacy TorchScript exporter is used (dynamo=False where torch has that parameter), opset 17, dynamic
batch/height/width; the `onnx` Python package is not needed. --exporter dynamo (or auto, after a legacy failure)
tries torch's dynamo exporter, which needs onnx + onnxscript. --small builds the same structure at a size that
exports and runs on a CPU in seconds (UNet 32/64/64/64, 2-layer text encoder of width 64, VAE 64/64/32/32).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sys
import time
from typing import Dict, List, Tuple

import torch

sys.dont_write_bytecode = True  # keep tools/bench-gpu free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sd_modules as S  # noqa: E402

SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
SCALING_FACTOR = 0.18215
MODELS = (("general", 0), ("expert", 1))


def write_json(path: str, value: object) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def export(module: torch.nn.Module, args: Tuple[torch.Tensor, ...], path: str, inputs: List[str], outputs: List[str],
           axes: Dict[str, Dict[int, str]], opset: int, exporter: str) -> str:
    """torch.onnx.export with the legacy (TorchScript) exporter; returns the exporter that wrote the file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    params = inspect.signature(torch.onnx.export).parameters
    common = dict(input_names=inputs, output_names=outputs, dynamic_axes=axes, do_constant_folding=True)
    if exporter in ("auto", "legacy"):
        kwargs = dict(common, opset_version=opset)
        if "dynamo" in params:
            kwargs["dynamo"] = False
        try:
            with torch.no_grad():
                torch.onnx.export(module, args, path, **kwargs)
            return "legacy"
        except Exception as err:  # noqa: BLE001 - report and maybe fall back
            if exporter == "legacy" or "dynamo" not in params:
                raise
            print(f"  legacy exporter failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}); trying dynamo", flush=True)
    with torch.no_grad():
        torch.onnx.export(module, args, path, dynamo=True, opset_version=max(opset, 18), **common)
    return "dynamo"


def make_folder(out: str, name: str, seed: int, variant: str, dtype: torch.dtype, device: str, tokenizer: str,
                opset: int, exporter: str) -> dict:
    cfg = S.VARIANTS[variant]
    root = os.path.join(out, name)
    os.makedirs(root, exist_ok=True)
    info: dict = {
        "name": name, "variant": variant, "seed": seed, "dtype": "fp16" if dtype == torch.float16 else "fp32",
        "init_device": torch.device(device).type, "torch": torch.__version__, "opset": opset,
        "timestep": "float [batch] (diffusers >= 0.8 style; float16 in an fp16 export)",
        "parts": {},
    }
    batch, h, w = 2, 8, 8  # trace shapes; every one of these axes is dynamic in the exported graph
    ctx = cfg["unet"]["context"]
    t0 = time.time()

    te = S.build("text_encoder", variant, seed, device)
    info["parts"]["text_encoder"] = {"params": S.count_params(te), "fingerprint": S.fingerprint(te)}
    te = te.to(dtype)
    ids = torch.full((batch, 77), 49407, dtype=torch.int32, device=device)
    ids[:, 0] = 49406
    info["parts"]["text_encoder"]["exporter"] = export(
        te, (ids,), os.path.join(root, "text_encoder", "model.onnx"), ["input_ids"], ["last_hidden_state", "pooler_output"],
        {"input_ids": {0: "batch"}, "last_hidden_state": {0: "batch"}, "pooler_output": {0: "batch"}}, opset, exporter)
    del te
    print(f"  {name}/text_encoder  {time.time() - t0:6.1f} s", flush=True)

    t1 = time.time()
    unet = S.build("unet", variant, seed, device)
    info["parts"]["unet"] = {"params": S.count_params(unet), "fingerprint": S.fingerprint(unet)}
    unet = unet.to(dtype)
    sample = torch.randn(batch, cfg["unet"]["latent"], h, w, device=device, dtype=dtype)
    timestep = torch.tensor([981.0] * batch, device=device, dtype=dtype)
    ehs = torch.randn(batch, 77, ctx, device=device, dtype=dtype)
    info["parts"]["unet"]["exporter"] = export(
        unet, (sample, timestep, ehs), os.path.join(root, "unet", "model.onnx"),
        ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
        {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
         "encoder_hidden_states": {0: "batch"}, "out_sample": {0: "batch", 2: "height", 3: "width"}}, opset, exporter)
    del unet
    print(f"  {name}/unet          {time.time() - t1:6.1f} s", flush=True)

    t2 = time.time()
    vae = S.build("vae_decoder", variant, seed, device)
    info["parts"]["vae_decoder"] = {"params": S.count_params(vae), "fingerprint": S.fingerprint(vae)}
    vae = vae.to(dtype)
    latent = torch.randn(1, cfg["vae"]["latent"], h, w, device=device, dtype=dtype)
    info["parts"]["vae_decoder"]["exporter"] = export(
        vae, (latent,), os.path.join(root, "vae_decoder", "model.onnx"), ["latent_sample"], ["sample"],
        {"latent_sample": {0: "batch", 2: "height", 3: "width"}, "sample": {0: "batch", 2: "image_height", 3: "image_width"}},
        opset, exporter)
    del vae
    print(f"  {name}/vae_decoder   {time.time() - t2:6.1f} s", flush=True)

    write_json(os.path.join(root, "scheduler", "scheduler_config.json"), SCHEDULER_CONFIG)
    tok = os.path.join(root, "tokenizer")
    os.makedirs(tok, exist_ok=True)
    for f in os.listdir(tokenizer):
        if os.path.isfile(os.path.join(tokenizer, f)):
            shutil.copyfile(os.path.join(tokenizer, f), os.path.join(tok, f))
    for f in ("vocab.json", "merges.txt"):
        if not os.path.exists(os.path.join(tok, f)):
            raise SystemExit(f"--tokenizer {tokenizer} has no {f}")
    write_json(os.path.join(root, "vae_decoder", "config.json"), {
        "_class_name": "AutoencoderKL", "block_out_channels": list(cfg["vae"]["block_out"]), "in_channels": 3,
        "out_channels": 3, "latent_channels": cfg["vae"]["latent"], "layers_per_block": cfg["vae"]["layers"],
        "norm_num_groups": cfg["vae"]["groups"], "scaling_factor": SCALING_FACTOR,
    })
    write_json(os.path.join(root, "unet", "config.json"), {
        "_class_name": "UNet2DConditionModel", "in_channels": cfg["unet"]["latent"], "out_channels": cfg["unet"]["latent"],
        "block_out_channels": list(cfg["unet"]["channels"]), "layers_per_block": cfg["unet"]["layers"],
        "attention_head_dim": cfg["unet"]["heads"], "cross_attention_dim": ctx, "sample_size": 64,
    })
    write_json(os.path.join(root, "text_encoder", "config.json"), {
        "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_size": cfg["text"]["width"],
        "num_hidden_layers": cfg["text"]["layers"], "num_attention_heads": cfg["text"]["heads"],
        "intermediate_size": cfg["text"]["ffn"], "max_position_embeddings": 77, "vocab_size": cfg["text"]["vocab"],
        "hidden_act": "quick_gelu",
    })
    write_json(os.path.join(root, "model_index.json"), {
        "_class_name": "OnnxStableDiffusionPipeline", "_diffusers_version": "0.8.0", "_fusegraph_bench": info,
        "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["diffusers", "OnnxRuntimeModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "OnnxRuntimeModel"],
        "vae_decoder": ["diffusers", "OnnxRuntimeModel"], "vae_encoder": [None, None],
    })
    info["seconds"] = round(time.time() - t0, 1)
    write_json(os.path.join(root, "fusegraph_bench.json"), info)
    return info


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    default_tok = os.path.normpath(os.path.join(here, "..", "..", "..", "shared", "fixtures", "clip-tokenizer"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder that receives general/ and expert/")
    p.add_argument("--tokenizer", default=default_tok, help="CLIP tokenizer folder to copy (default %(default)s)")
    p.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--small", action="store_true", help="tiny variant with the same structure (CPU-friendly)")
    p.add_argument("--seed", type=int, default=1, help="general gets SEED, expert SEED+1 (default 1)")
    p.add_argument("--only", choices=("general", "expert"), help="write one of the two folders")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--exporter", choices=("auto", "legacy", "dynamo"), default="auto")
    a = p.parse_args()
    dtype = torch.float16 if a.dtype == "fp16" else torch.float32
    if dtype == torch.float16 and torch.device(a.device).type != "cuda":
        p.error("--dtype fp16 needs --device cuda (CPU kernels for half convolutions are missing in torch)")
    if not os.path.isdir(a.tokenizer):
        p.error(f"tokenizer folder not found: {a.tokenizer}")
    variant = "small" if a.small else "full"
    print(f"make_models: variant {variant}, {a.dtype}, device {a.device}, torch {torch.__version__} -> {a.out}", flush=True)
    for name, offset in MODELS:
        if a.only and a.only != name:
            continue
        info = make_folder(a.out, name, a.seed + offset, variant, dtype, a.device, a.tokenizer, a.opset, a.exporter)
        sizes = {part: os.path.getsize(os.path.join(a.out, name, part, "model.onnx")) for part in info["parts"]}
        print(f"  {name}: seed {info['seed']}, {info['seconds']} s, "
              + ", ".join(f"{k} {v['params'] / 1e6:.1f}M params {sizes[k] / 2**20:.0f} MiB" for k, v in info["parts"].items()),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
