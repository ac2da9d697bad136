#!/usr/bin/env python3
"""PyTorch reference for the GPU benchmark: MagicFusion's cross-domain run, scheduled the way the original code does.

usage: python3 tools/bench-gpu/reference_sampler.py --models DIR --prompt-ids FILE --uncond-ids FILE --out DIR
           [--device cuda|cpu] [--precision autocast|full] [--attention math|sdpa|both] [--steps 100] [--size 512]
           [--fusion 600,1,1] [--mode 2] [--scale 10] [--seed 6854] [--warmup-steps 3]

DIR holds general/ and expert/ as written by make_models.py; the PyTorch modules are rebuilt from their
fusegraph_bench.json (same variant, seed and weight-drawing device type) and checked against its fingerprints, so the
reference runs exactly the exported weights. --prompt-ids/--uncond-ids are the JSON arrays that
`node bin/fusegraph.js tokenize DIR/general/tokenizer TEXT` prints (without them, transformers' CLIPTokenizer is
tried). The ids are used for every prompt, as in graphs/magicfusion-cross-domain.json, where the three prompts are
the same text.

Three runs, as scripts/stable_txt2img.py L338-340 (shared/docs/magicfusion-snb.md §1-3):
  general alone   BASE (general) with its text encoder, CFG batch 2 (uncond, cond), one UNet call per step
  expert alone    OTHER (expert) with its own text encoder and VAE, one call per step
  fused           ddim.py L298-354: both models every step (4 evaluations as 2 batched calls), saliency with the
                  cross-model unconditional (quirk Q1), AvgPool2d(4,1,1) + bilinear resize + channel mean, spatial
                  softmax (fp32, stored into the fp16 map under autocast), argmax blend (ties to BASE), "600,1,1"
                  mode 2 = SNB for t > 600 then BASE alone; computed every step even outside the window, as the
                  original does; BASE's text encoder and VAE
DDIM eta 0 with the CompVis schedule (alphas_cumprod from a float64 cumprod stored as float32, timesteps
1, 11, ..., 991, final alpha = alphas_cumprod[0]); --precision autocast = fp32 weights under
torch.autocast(float16) with the fp32 latent, as `--precision autocast` in the original. x_T comes from
numpy.random.RandomState(seed), as FuseGraph's NoiseLatent (the original draws torch.randn on CUDA), so the final
latents can be compared with FuseGraph's.

Measured on the timed pass (after a --warmup-steps warm-up of each run type): total wall time (prompts encoded,
three latents sampled, decoded, turned into uint8 images and written as PNG where PIL is installed), UNet calls, UNet ms per call (synchronised around every
call: FuseGraph's onnxruntime-node calls are synchronous too), host time per step outside the UNet, peak GPU memory
(torch.cuda.max_memory_allocated, and nvidia-smi memory.used polled every 100 ms). Writes DIR_OUT/reference.json,
the final latents as .npy (<attention>_<run>.npy) and the PNGs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep tools/bench-gpu free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sd_modules as S  # noqa: E402

SCALING_FACTOR = 0.18215


class GpuMemoryPoller:
    """Peak of `nvidia-smi --query-gpu=memory.used` sampled every 100 ms (MiB); None where nvidia-smi is missing."""

    def __init__(self) -> None:
        self.peak: Optional[int] = None
        self.proc: Optional[subprocess.Popen] = None
        self.thread: Optional[threading.Thread] = None

    def start(self) -> "GpuMemoryPoller":
        try:
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "100"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return self
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            try:
                v = int(line.strip().split(",")[0])
            except ValueError:
                continue
            self.peak = v if self.peak is None else max(self.peak, v)

    def stop(self) -> Optional[int]:
        if self.proc:
            time.sleep(0.25)
            self.proc.terminate()
            self.proc.wait()
        if self.thread:
            self.thread.join(timeout=2)
        return self.peak


class Model:
    def __init__(self, folder: str, device: str):
        with open(os.path.join(folder, "fusegraph_bench.json")) as f:
            self.info = json.load(f)
        self.name = os.path.basename(os.path.normpath(folder))
        init_dev = self.info["init_device"]
        if init_dev == "cuda" and not torch.cuda.is_available():
            raise SystemExit(f"{folder}: weights were drawn on CUDA; rebuild them on a CUDA machine or re-export on CPU")
        draw = init_dev if init_dev == "cpu" else device
        self.parts: Dict[str, torch.nn.Module] = {}
        for part in ("text_encoder", "unet", "vae_decoder"):
            m = S.build(part, self.info["variant"], self.info["seed"], draw).to(device)
            want = self.info["parts"][part]["fingerprint"]
            got = S.fingerprint(m)
            if abs(got - want) > 1e-3 * max(1.0, abs(want)):
                raise SystemExit(f"{folder}/{part}: rebuilt weights differ from the export (fingerprint {got} != {want})")
            self.parts[part] = m.requires_grad_(False)
        self.te, self.unet, self.vae = self.parts["text_encoder"], self.parts["unet"], self.parts["vae_decoder"]


def alphas_cumprod() -> torch.Tensor:
    """ldm make_beta_schedule('linear', 1000, 0.00085, 0.012): float64 linspace of sqrt, squared, cumprod, then float32."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


class Sampler:
    def __init__(self, steps: int, device: str, scale: float, sync: bool):
        ac = alphas_cumprod()
        # ddim_timesteps, 'uniform' discretisation + 1 (util.py L46-60): 1, 11, ..., 991 for 100 steps. ldm's
        # range(0, 1000, c) yields an extra step when steps does not divide 1000; this takes the first `steps`
        # entries, as diffusers' "leading" spacing with steps_offset 1 (and FuseGraph) does.
        c = 1000 // steps
        self.timesteps = [i * c + 1 for i in range(steps)]
        self.alphas = ac[self.timesteps].tolist()
        self.alphas_prev = [float(ac[0])] + ac[self.timesteps[:-1]].tolist()
        self.device = device
        self.scale = scale
        self.sync = sync
        self.unet_ms: Dict[str, List[float]] = {}

    def timed_unet(self, model: Model, x: torch.Tensor, t: int, ctx: torch.Tensor) -> torch.Tensor:
        x_in = torch.cat([x, x])
        t_in = torch.full((2,), float(t), device=self.device)
        if self.sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model.unet(x_in, t_in, ctx)
        if self.sync:
            torch.cuda.synchronize()
        self.unet_ms.setdefault(model.name, []).append((time.perf_counter() - t0) * 1000)
        return out

    def ddim_update(self, x: torch.Tensor, e_t: torch.Tensor, index: int) -> torch.Tensor:
        # p_sample_ddim with eta = 0: fp32 latent, e_t fp16 under autocast, so the update promotes to fp32.
        a_t, a_prev = self.alphas[index], self.alphas_prev[index]
        pred_x0 = (x - (1.0 - a_t) ** 0.5 * e_t) / a_t ** 0.5
        return a_prev ** 0.5 * pred_x0 + (1.0 - a_prev) ** 0.5 * e_t

    def single(self, model: Model, x: torch.Tensor, uc: torch.Tensor, c: torch.Tensor, steps: Optional[int] = None) -> torch.Tensor:
        ctx = torch.cat([uc, c])
        n = len(self.timesteps)
        for i, t in enumerate(reversed(self.timesteps)):
            if steps is not None and i >= steps:
                break
            index = n - i - 1
            e_uncond, e_cond = self.timed_unet(model, x, t, ctx).chunk(2)
            e_t = e_uncond + self.scale * (e_cond - e_uncond)
            x = self.ddim_update(x, e_t, index)
        return x

    def fused(self, base: Model, other: Model, x: torch.Tensor, uc: torch.Tensor, c_other: torch.Tensor, c_base: torch.Tensor,
              fusion: Tuple[int, float, float], mode: int, steps: Optional[int] = None) -> Tuple[torch.Tensor, float]:
        """ddim.py L298-354 (BASE = sampler.model = general, OTHER = sampler.model0 = expert). Returns x and the mean
        share of pixels that took OTHER's noise inside the SNB window."""
        v1, ns0, ns1 = fusion
        s = self.scale
        ctx_other = torch.cat([uc, c_other])
        ctx_base = torch.cat([uc, c_base])
        n = len(self.timesteps)
        took: List[float] = []
        for i, t in enumerate(reversed(self.timesteps)):
            if steps is not None and i >= steps:
                break
            index = n - i - 1
            e_t_uncond, e_e = self.timed_unet(other, x, t, ctx_other).chunk(2)
            e_t_uncond0, e_g = self.timed_unet(base, x, t, ctx_base).chunk(2)
            eps_e = e_t_uncond + s * (e_e - e_t_uncond)
            eps_g = e_t_uncond0 + s * (e_g - e_t_uncond0)
            aeps_e = s * (e_e - e_t_uncond0)  # quirk Q1: OTHER's cond minus BASE's uncond
            aeps_g = s * (e_g - e_t_uncond0)
            ceps = torch.stack([eps_g, eps_e])
            aceps = torch.stack([aeps_g, aeps_e])
            b, ch, h, w = eps_g.shape
            pooled = F.avg_pool2d(aceps.abs().reshape(-1, ch, h, w), 4, stride=1, padding=1)  # count_include_pad
            # torchvision Resize(64) on a tensor: bilinear, align_corners=False, computed in float32 and cast back.
            resized = F.interpolate(pooled.float(), size=(h, w), mode="bilinear", align_corners=False).to(pooled.dtype)
            ceps0 = resized.reshape(2, -1, ch, h, w).mean(dim=2, keepdim=True).repeat(1, 1, ch, 1, 1)
            nn_, cc, hh, ww = ceps0[0].shape
            ceps0[0] = torch.softmax(ns0 * ceps0[0].reshape(nn_ * cc, hh * ww), dim=1).reshape(nn_, cc, hh, ww)
            ceps0[1] = torch.softmax(ns1 * ceps0[1].reshape(nn_ * cc, hh * ww), dim=1).reshape(nn_, cc, hh, ww)
            argeps = torch.argmax(ceps0, dim=0, keepdim=True)
            snb = torch.gather(ceps, 0, argeps)[0]
            if mode == 1:
                e_t = eps_g if t > v1 else snb
            else:
                e_t = snb if t > v1 else eps_g
            if (mode == 2) == (t > v1):
                took.append(float(argeps.float().mean()))
            x = self.ddim_update(x, e_t, index)
        return x, (sum(took) / len(took) if took else 0.0)


def decode(model: Model, x: torch.Tensor) -> np.ndarray:
    img = model.vae(x / SCALING_FACTOR).float()
    img = torch.clamp((img + 1.0) / 2.0, 0.0, 1.0)
    return (255.0 * img[0].permute(1, 2, 0)).cpu().numpy().astype(np.uint8)  # truncation, as the original


def save_png(arr: np.ndarray, path: str) -> bool:
    try:
        from PIL import Image
    except ImportError:
        return False
    Image.fromarray(arr).save(path)
    return True


def read_ids(path: Optional[str], text: str, tokenizer_dir: str) -> List[int]:
    if path:
        with open(path) as f:
            ids = json.load(f)
        if not (isinstance(ids, list) and len(ids) == 77 and all(isinstance(i, int) for i in ids)):
            raise SystemExit(f"{path}: expected a JSON array of 77 token ids")
        return ids
    try:
        from transformers import CLIPTokenizer
    except ImportError:
        raise SystemExit("pass --prompt-ids/--uncond-ids (from `node bin/fusegraph.js tokenize`): transformers is not installed")
    tok = CLIPTokenizer.from_pretrained(tokenizer_dir)
    return list(tok(text, padding="max_length", max_length=77, truncation=True).input_ids)


def run_variant(attention: str, a: argparse.Namespace, general: Model, expert: Model, ids: Dict[str, List[int]],
                fusion: Tuple[int, float, float]) -> dict:
    S.set_attention(attention)
    device = a.device
    cuda = torch.device(device).type == "cuda"
    autocast = a.precision == "autocast"
    h = w = a.size // 8
    x_t = torch.from_numpy(np.random.RandomState(a.seed).standard_normal((1, 4, h, w)).astype(np.float32)).to(device)
    sampler = Sampler(a.steps, device, a.scale, sync=cuda)

    def ctx_manager():
        return torch.autocast(device_type="cuda", dtype=torch.float16) if autocast else contextlib.nullcontext()

    def encode(model: Model, key: str) -> torch.Tensor:
        t = torch.tensor([ids[key]], dtype=torch.int32, device=device)
        return model.te(t)[0]

    def three_runs(steps: Optional[int]) -> Tuple[Dict[str, torch.Tensor], Dict[str, dict], float]:
        lat: Dict[str, torch.Tensor] = {}
        per: Dict[str, dict] = {}
        took = 0.0
        with torch.no_grad():
            # scripts/stable_txt2img.py L338-340: general alone, expert alone, fused; autocast around each run.
            for run in ("general", "expert", "fused"):
                t0 = time.perf_counter()
                before = {k: len(v) for k, v in sampler.unet_ms.items()}
                with ctx_manager():
                    owner = expert if run == "expert" else general  # text encoder and VAE (quirk Q5)
                    uc, cp = encode(owner, "uncond"), encode(owner, "prompt")
                    if cuda:
                        torch.cuda.synchronize()
                    ts = time.perf_counter()
                    if run == "fused":
                        x, took = sampler.fused(general, expert, x_t, uc, cp, cp, fusion, a.mode, steps)
                    else:
                        x = sampler.single(owner, x_t, uc, cp, steps)
                    if cuda:
                        torch.cuda.synchronize()
                    sample_ms = (time.perf_counter() - ts) * 1000
                    img = decode(owner, x)  # in the warm-up too, so the timed pass finds the VAE's kernels chosen
                if cuda:
                    torch.cuda.synchronize()
                ms = (time.perf_counter() - t0) * 1000
                calls = sum(len(v) - before.get(k, 0) for k, v in sampler.unet_ms.items())
                unet = sum(sum(v[before.get(k, 0):]) for k, v in sampler.unet_ms.items())
                lat[run] = x
                per[run] = {"ms": round(ms, 1), "sample_ms": round(sample_ms, 1), "unet_calls": calls, "unet_ms": round(unet, 1)}
                if steps is None:
                    # Written inside the timed region, as the original writes its JPEGs and FuseGraph its PNGs.
                    png = f"{attention}_{run}.png"
                    if save_png(img, os.path.join(a.out, png)):
                        per[run]["png"] = png
                    per[run]["ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return lat, per, took

    # Warm-up: a few steps of each run type (cuDNN/cuBLAS choices, allocator pools, autocast weight casts).
    three_runs(a.warmup_steps)
    sampler.unet_ms.clear()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    poller = GpuMemoryPoller().start() if cuda else None
    t0 = time.perf_counter()
    latents, per_run, took = three_runs(None)
    total_ms = (time.perf_counter() - t0) * 1000
    smi_peak = poller.stop() if poller else None

    all_ms = [v for vs in sampler.unet_ms.values() for v in vs]
    steps_total = 3 * a.steps
    result = {
        "attention": attention,
        "total_ms": round(total_ms, 1),
        "unet_calls": len(all_ms),
        "unet_calls_per_model": {k: len(v) for k, v in sampler.unet_ms.items()},
        "unet_ms_per_call": round(statistics.mean(all_ms), 3),
        "unet_ms_median": round(statistics.median(all_ms), 3),
        "unet_ms_per_call_per_model": {k: round(statistics.mean(v), 3) for k, v in sampler.unet_ms.items()},
        "unet_ms_total": round(sum(all_ms), 1),
        "sampling_ms": round(sum(r["sample_ms"] for r in per_run.values()), 1),
        "step_ms": round(sum(r["sample_ms"] for r in per_run.values()) / steps_total, 3),
        "host_ms_per_step": round((sum(r["sample_ms"] for r in per_run.values()) - sum(all_ms)) / steps_total, 3),
        "snb_share_other": round(took, 4),
        "peak_mem_allocated_mib": round(torch.cuda.max_memory_allocated() / 2 ** 20) if cuda else None,
        "peak_mem_nvidia_smi_mib": smi_peak,
        "runs": {},
        "latents": {},
    }
    for run, info in per_run.items():
        name = f"{attention}_{run}.npy"
        np.save(os.path.join(a.out, name), latents[run].float().cpu().numpy())
        result["latents"][run] = name
        result["runs"][run] = info
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", required=True, help="folder with general/ and expert/ from make_models.py")
    p.add_argument("--out", required=True)
    p.add_argument("--prompt-ids", help="JSON array of 77 ids for the prompt (fusegraph tokenize)")
    p.add_argument("--uncond-ids", help="JSON array of 77 ids for the empty prompt")
    p.add_argument("--prompt", default="A lion with a crown on his head", help="used only with transformers' tokenizer")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=("autocast", "full"))
    p.add_argument("--attention", choices=("math", "sdpa", "both"), default="math",
                   help="math = softmax(QK^T)V as ldm (the original); sdpa = torch 2 fused kernel; both = two timed passes")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--fusion", default="600,1,1")
    p.add_argument("--mode", type=int, choices=(1, 2), default=2)
    p.add_argument("--scale", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=6854)
    p.add_argument("--warmup-steps", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    a = p.parse_args()
    cuda = torch.device(a.device).type == "cuda"
    if a.threads:
        torch.set_num_threads(a.threads)
    a.precision = a.precision or ("autocast" if cuda else "full")
    if a.precision == "autocast" and not cuda:
        p.error("--precision autocast is the CUDA fp16 mode; use --precision full on the CPU")
    v1, ns0, ns1 = a.fusion.split(",")
    fusion = (int(v1), float(ns0), float(ns1))
    os.makedirs(a.out, exist_ok=True)
    tok_dir = os.path.join(a.models, "general", "tokenizer")
    ids = {"prompt": read_ids(a.prompt_ids, a.prompt, tok_dir), "uncond": read_ids(a.uncond_ids, "", tok_dir)}

    t0 = time.perf_counter()
    general = Model(os.path.join(a.models, "general"), a.device)
    expert = Model(os.path.join(a.models, "expert"), a.device)
    load_s = time.perf_counter() - t0
    variants = ["math", "sdpa"] if a.attention == "both" else [a.attention]
    if "sdpa" in variants and not hasattr(F, "scaled_dot_product_attention"):
        print("reference: torch has no scaled_dot_product_attention; skipping the sdpa pass", flush=True)
        variants = [v for v in variants if v != "sdpa"] or ["math"]
    result = {
        "tool": "tools/bench-gpu/reference_sampler.py",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "precision": a.precision,
        "variant": general.info["variant"],
        "dtype_export": general.info["dtype"],
        "steps": a.steps, "size": a.size, "fusion": a.fusion, "mode": a.mode, "scale": a.scale, "seed": a.seed,
        "load_s": round(load_s, 1),
        "primary": variants[0],
        "variants": {},
    }
    for v in variants:
        r = run_variant(v, a, general, expert, ids, fusion)
        result["variants"][v] = r
        print(f"reference [{v}] total {r['total_ms'] / 1000:.2f} s, {r['unet_calls']} UNet calls, "
              f"{r['unet_ms_per_call']:.2f} ms/call, host {r['host_ms_per_step']:.2f} ms/step, "
              f"peak {r['peak_mem_allocated_mib']} MiB allocated / {r['peak_mem_nvidia_smi_mib']} MiB nvidia-smi", flush=True)
    with open(os.path.join(a.out, "reference.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
