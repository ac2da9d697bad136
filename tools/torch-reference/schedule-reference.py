"""Writes test/fixtures/torch-schedules.json: diffusers' beta / alpha-bar / sigma arrays as PyTorch computes them.

Run once with a real PyTorch (Debian: `apt-get install python3-torch`, then `/usr/bin/python3 this-file OUT.json`); the
tests read the committed JSON and need no Python. It reproduces diffusers' own tensor code for each beta schedule
(scheduling_ddim.py, scheduling_euler_discrete.py: torch.linspace, torch.cumprod, rescale_zero_terminal_snr) so the
values are torch's float32 results, bit for bit. Arrays are stored as base64 little-endian float32.
"""
import base64
import json
import math
import sys

import torch


def f32(t):
    return base64.b64encode(t.to(torch.float32).contiguous().numpy().tobytes()).decode()


def betas_for(cfg):
    n, b0, b1, kind = cfg["num_train_timesteps"], cfg["beta_start"], cfg["beta_end"], cfg["beta_schedule"]
    if kind == "linear":
        return torch.linspace(b0, b1, n, dtype=torch.float32)
    if kind == "scaled_linear":
        return torch.linspace(b0**0.5, b1**0.5, n, dtype=torch.float32) ** 2
    # squaredcos_cap_v2: diffusers' betas_for_alpha_bar (Python floats), then torch.tensor(float32)
    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return torch.tensor([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)], dtype=torch.float32)


def rescale_zero_terminal_snr(betas):
    alphas = 1.0 - betas
    alphas_cumprod = torch.cumprod(alphas, dim=0)
    alphas_bar_sqrt = alphas_cumprod.sqrt()
    a0 = alphas_bar_sqrt[0].clone()
    aT = alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt -= aT
    alphas_bar_sqrt *= a0 / (a0 - aT)
    alphas_bar = alphas_bar_sqrt**2
    alphas = alphas_bar[1:] / alphas_bar[:-1]
    alphas = torch.cat([alphas_bar[0:1], alphas])
    return 1 - alphas


CONFIGS = {
    "sd1": {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"},
    "linear": {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"},
    "cosine": {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "squaredcos_cap_v2"},
    "sd1_zero_snr": {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                     "rescale_betas_zero_snr": True},
    # diffusers' scheduler tests use 1100 train steps
    "tests_1100": {"num_train_timesteps": 1100, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"},
    "odd_37": {"num_train_timesteps": 37, "beta_start": 0.001, "beta_end": 0.3, "beta_schedule": "scaled_linear"},
}

out = {"torch": torch.__version__, "configs": {}}
for name, cfg in CONFIGS.items():
    betas = betas_for(cfg)
    if cfg.get("rescale_betas_zero_snr"):
        betas = rescale_zero_terminal_snr(betas)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    # diffusers' Karras-family schedulers: ((1 - ᾱ) / ᾱ) ** 0.5 as float32 tensor ops
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
    out["configs"][name] = {"config": cfg, "betas": f32(betas), "alphas_cumprod": f32(alphas_cumprod), "sigmas": f32(sigmas)}

json.dump(out, open(sys.argv[1], "w"), indent=1)
