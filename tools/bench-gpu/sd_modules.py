"""Plain-PyTorch Stable Diffusion 1.x-shaped networks with seeded random weights, for the GPU benchmark.

Written from the SD 1.x architecture description (no diffusers/transformers needed): a CLIP-L-shaped text encoder,
the SD UNet (320/640/1280/1280, cross-attention transformer blocks at the first three levels, 2 res blocks per level,
8 heads, context 768, mid block) and the SD VAE decoder (post_quant_conv + decoder with 512/512/256/128 up blocks of
3 res blocks each, mid attention). `SMALL` keeps the same structure at a size that runs on a CPU in seconds.

The weights are a deterministic function of (seed, parameter name, device type): `init_weights` seeds one generator
per parameter, so make_models.py (export) and reference_sampler.py (PyTorch reference) build identical networks
without shipping a state dict (the reference draws on the device type the export recorded). Every value is rounded to the nearest float16, so an fp16 export and an
fp32/autocast PyTorch run hold exactly the same numbers.

Compatible with torch 1.13 and 2.x. Attention is written out as matmul/softmax/matmul (what the legacy ONNX exporter
turns into plain ops, and what the original MagicFusion/ldm code runs); `set_attention('sdpa')` switches the
PyTorch reference to torch 2's fused scaled_dot_product_attention for a stronger eager baseline.
"""

from __future__ import annotations

import math
import zlib
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------------------------
# Configurations

FULL: Dict[str, dict] = {
    "text": {"vocab": 49408, "width": 768, "layers": 12, "heads": 12, "ffn": 3072, "seq": 77},
    "unet": {
        "channels": (320, 640, 1280, 1280),
        "attention": (True, True, True, False),
        "layers": 2,
        "heads": 8,
        "context": 768,
        "groups": 32,
        "latent": 4,
    },
    "vae": {"block_out": (128, 256, 512, 512), "layers": 2, "latent": 4, "groups": 32},
}

SMALL: Dict[str, dict] = {
    "text": {"vocab": 49408, "width": 64, "layers": 2, "heads": 4, "ffn": 256, "seq": 77},
    "unet": {
        "channels": (32, 64, 64, 64),
        "attention": (True, True, True, False),
        "layers": 2,
        "heads": 8,
        "context": 64,
        "groups": 32,
        "latent": 4,
    },
    "vae": {"block_out": (32, 32, 64, 64), "layers": 2, "latent": 4, "groups": 32},
}

VARIANTS = {"full": FULL, "small": SMALL}

_ATTENTION = {"impl": "math"}


def set_attention(impl: str) -> None:
    """'math' (explicit softmax(QK^T)V, as ldm and the ONNX export) or 'sdpa' (torch>=2 fused kernel)."""
    if impl not in ("math", "sdpa"):
        raise ValueError(f"unknown attention implementation {impl!r}")
    if impl == "sdpa" and not hasattr(F, "scaled_dot_product_attention"):
        raise RuntimeError("attention 'sdpa' needs torch >= 2.0")
    _ATTENTION["impl"] = impl


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """q [B,h,N,d], k/v [B,h,M,d] -> [B,h,N,d]. mask is additive, broadcast to [B,h,N,M]."""
    if _ATTENTION["impl"] == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.to(q.dtype), scale=scale)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores + mask.to(scores.dtype)
    probs = scores.softmax(dim=-1)
    return torch.matmul(probs.to(v.dtype), v)


# ---------------------------------------------------------------------------------------------------------------
# Text encoder (CLIP ViT-L/14 text tower shape)


class ClipAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        d = c // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, n, self.heads, d).transpose(1, 2)

        out = attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)), d ** -0.5, mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class ClipLayer(nn.Module):
    def __init__(self, width: int, heads: int, ffn: int):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(width)
        self.self_attn = ClipAttention(width, heads)
        self.layer_norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, ffn)
        self.fc2 = nn.Linear(ffn, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        h = self.fc1(self.layer_norm2(x))
        h = h * torch.sigmoid(1.702 * h)  # quick_gelu
        return x + self.fc2(h)


class TextEncoder(nn.Module):
    """input_ids [B,77] (int32) -> (last_hidden_state [B,77,W], pooler_output [B,W])."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.seq = cfg["seq"]
        self.token_embedding = nn.Embedding(cfg["vocab"], cfg["width"])
        self.position_embedding = nn.Parameter(torch.zeros(cfg["seq"], cfg["width"]))
        self.layers = nn.ModuleList([ClipLayer(cfg["width"], cfg["heads"], cfg["ffn"]) for _ in range(cfg["layers"])])
        self.final_layer_norm = nn.LayerNorm(cfg["width"])

    def forward(self, input_ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        ids = input_ids.long()
        x = self.token_embedding(ids) + self.position_embedding
        n = x.shape[1]
        mask = torch.full((n, n), float("-inf"), device=x.device).triu(1)  # causal
        for layer in self.layers:
            x = layer(x, mask)
        x = self.final_layer_norm(x)
        # Pooled = the state at the first end-of-text token (the highest id), as CLIP does.
        eos = ids.float().argmax(dim=-1)
        pooled = x.gather(1, eos[:, None, None].expand(-1, 1, x.shape[2])).squeeze(1)
        return x, pooled


# ---------------------------------------------------------------------------------------------------------------
# UNet (SD 1.x)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int, temb: Optional[int], eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout) if temb else None
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, temb: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, context: Optional[int] = None):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context or dim, dim, bias=False)
        self.to_v = nn.Linear(context or dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        ctx = x if context is None else context
        b, n, c = x.shape
        d = c // self.heads
        q = self.to_q(x).reshape(b, n, self.heads, d).transpose(1, 2)
        k = self.to_k(ctx).reshape(b, -1, self.heads, d).transpose(1, 2)
        v = self.to_v(ctx).reshape(b, -1, self.heads, d).transpose(1, 2)
        out = attention(q, k, v, d ** -0.5)
        return self.to_out(out.transpose(1, 2).reshape(b, n, c))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, context: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = CrossAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = CrossAttention(dim, heads, context)
        self.norm3 = nn.LayerNorm(dim)
        self.ff_proj = nn.Linear(dim, dim * 8)  # GEGLU: 2 x 4*dim
        self.ff_out = nn.Linear(dim * 4, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        h, gate = self.ff_proj(self.norm3(x)).chunk(2, dim=-1)
        return x + self.ff_out(h * F.gelu(gate))


class Transformer2D(nn.Module):
    def __init__(self, dim: int, heads: int, context: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.block = TransformerBlock(dim, heads, context)
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x))
        y = y.permute(0, 2, 3, 1).reshape(b, h * w, c)
        y = self.block(y, context)
        y = y.reshape(b, h, w, c).permute(0, 3, 1, 2)
        return x + self.proj_out(y)


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """sample [B,4,h,w], timestep [B] (float; [1] broadcasts), encoder_hidden_states [B,77,ctx] -> out_sample."""

    def __init__(self, cfg: dict):
        super().__init__()
        ch = cfg["channels"]
        groups, heads, ctx, layers = cfg["groups"], cfg["heads"], cfg["context"], cfg["layers"]
        self.time_channels = ch[0]
        temb = ch[0] * 4
        self.time_linear_1 = nn.Linear(ch[0], temb)
        self.time_linear_2 = nn.Linear(temb, temb)
        self.conv_in = nn.Conv2d(cfg["latent"], ch[0], 3, padding=1)

        self.down = nn.ModuleList()
        skips: List[int] = [ch[0]]
        cur = ch[0]
        for level, cout in enumerate(ch):
            for _ in range(layers):
                blk = nn.ModuleList([ResBlock(cur, cout, groups, temb)])
                if cfg["attention"][level]:
                    blk.append(Transformer2D(cout, heads, ctx, groups))
                self.down.append(blk)
                cur = cout
                skips.append(cur)
            if level < len(ch) - 1:
                self.down.append(nn.ModuleList([Downsample(cur)]))
                skips.append(cur)

        self.mid_res1 = ResBlock(cur, cur, groups, temb)
        self.mid_attn = Transformer2D(cur, heads, ctx, groups)
        self.mid_res2 = ResBlock(cur, cur, groups, temb)

        self.up = nn.ModuleList()
        for level, cout in reversed(list(enumerate(ch))):
            for _ in range(layers + 1):
                blk = nn.ModuleList([ResBlock(cur + skips.pop(), cout, groups, temb)])
                if cfg["attention"][level]:
                    blk.append(Transformer2D(cout, heads, ctx, groups))
                self.up.append(blk)
                cur = cout
            if level > 0:
                self.up.append(nn.ModuleList([Upsample(cur)]))
        assert not skips

        self.conv_norm_out = nn.GroupNorm(groups, cur)
        self.conv_out = nn.Conv2d(cur, cfg["latent"], 3, padding=1)

    def time_embedding(self, timestep: torch.Tensor, batch: int) -> torch.Tensor:
        # Sinusoidal features in float32 whatever the model dtype (as diffusers and ldm do): cos first, then sin.
        half = self.time_channels // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timestep.device) / half)
        t = timestep.float().reshape(-1).expand(batch)
        args = t[:, None] * freqs[None, :]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(self.time_linear_1.weight.dtype)
        return self.time_linear_2(F.silu(self.time_linear_1(emb)))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        temb = self.time_embedding(timestep, sample.shape[0])
        x = self.conv_in(sample)
        hs = [x]
        for blk in self.down:
            for m in blk:
                if isinstance(m, ResBlock):
                    x = m(x, temb)
                elif isinstance(m, Transformer2D):
                    x = m(x, encoder_hidden_states)
                else:
                    x = m(x)
            hs.append(x)
        x = self.mid_res2(self.mid_attn(self.mid_res1(x, temb), encoder_hidden_states), temb)
        for blk in self.up:
            for m in blk:
                if isinstance(m, ResBlock):
                    x = m(torch.cat([x, hs.pop()], dim=1), temb)
                elif isinstance(m, Transformer2D):
                    x = m(x, encoder_hidden_states)
                else:
                    x = m(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


# ---------------------------------------------------------------------------------------------------------------
# VAE decoder (SD AutoencoderKL decoder + post_quant_conv)


class VaeAttention(nn.Module):
    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, ch, eps=1e-6)
        self.to_q = nn.Linear(ch, ch)
        self.to_k = nn.Linear(ch, ch)
        self.to_v = nn.Linear(ch, ch)
        self.to_out = nn.Linear(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)
        q, k, v = (p(y)[:, None] for p in (self.to_q, self.to_k, self.to_v))  # one head
        out = attention(q, k, v, c ** -0.5)[:, 0]
        return x + self.to_out(out).transpose(1, 2).reshape(b, c, h, w)


class VaeDecoder(nn.Module):
    """latent_sample [B,4,h,w] (already divided by scaling_factor) -> sample [B,3,8h,8w]."""

    def __init__(self, cfg: dict):
        super().__init__()
        groups = cfg["groups"]
        rev = list(reversed(cfg["block_out"]))
        self.post_quant_conv = nn.Conv2d(cfg["latent"], cfg["latent"], 1)
        self.conv_in = nn.Conv2d(cfg["latent"], rev[0], 3, padding=1)
        self.mid_res1 = ResBlock(rev[0], rev[0], groups, None, eps=1e-6)
        self.mid_attn = VaeAttention(rev[0], groups)
        self.mid_res2 = ResBlock(rev[0], rev[0], groups, None, eps=1e-6)
        self.up = nn.ModuleList()
        cur = rev[0]
        for i, cout in enumerate(rev):
            for _ in range(cfg["layers"] + 1):
                self.up.append(ResBlock(cur, cout, groups, None, eps=1e-6))
                cur = cout
            if i < len(rev) - 1:
                self.up.append(Upsample(cur))
        self.conv_norm_out = nn.GroupNorm(groups, cur, eps=1e-6)
        self.conv_out = nn.Conv2d(cur, 3, 3, padding=1)

    def forward(self, latent_sample: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(self.post_quant_conv(latent_sample))
        x = self.mid_res2(self.mid_attn(self.mid_res1(x)))
        for m in self.up:
            x = m(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


# ---------------------------------------------------------------------------------------------------------------
# Seeded weights


class _NoDefaultInit:
    """Skips torch's default parameter init while modules are built: init_weights overwrites every value anyway, and
    the default init of an 860M-parameter UNet would cost as much again."""

    CLASSES = (nn.Linear, nn.Conv2d, nn.Embedding, nn.LayerNorm, nn.GroupNorm)

    def __enter__(self) -> "_NoDefaultInit":
        self.saved = [(c, c.reset_parameters) for c in self.CLASSES]
        for c in self.CLASSES:
            c.reset_parameters = lambda self: None  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        for c, f in self.saved:
            c.reset_parameters = f  # type: ignore[assignment]


def init_weights(module: nn.Module, seed: int) -> None:
    """Deterministic weights: one generator per parameter, on the parameter's device, seeded from (seed, name).

    The values depend on the device type that draws them (CPU and CUDA generators differ), so make_models.py records
    the init device and reference_sampler.py draws on the same one. Matrices/kernels ~ N(0, 1/fan_in) (unit-variance
    activations through the GroupNorm/LayerNorm-guarded network), norm scales ~ 1 + N(0, 0.02^2), biases and
    embeddings ~ N(0, 0.02^2). Every value is rounded to the nearest float16.
    """
    with torch.no_grad():
        for name, p in module.named_parameters():
            g = torch.Generator(device=p.device)
            g.manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % (2 ** 63))
            leaf = name.rsplit(".", 1)[-1]
            owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            v = torch.randn(p.shape, generator=g, device=p.device, dtype=torch.float32)
            if isinstance(owner, (nn.LayerNorm, nn.GroupNorm)):
                v = v * 0.02 + (1.0 if leaf == "weight" else 0.0)
            elif isinstance(owner, nn.Embedding) or leaf == "position_embedding":
                v = v * 0.02
            elif p.dim() >= 2:
                v = v / math.sqrt(p[0].numel())
            else:
                v = v * 0.02
            p.copy_(v.half().float())


PART_SEED_OFFSET = {"text_encoder": 0, "unet": 1, "vae_decoder": 2}


def build(part: str, variant: str, seed: int, device: str = "cpu") -> nn.Module:
    """A float32 module of `part` ('text_encoder' | 'unet' | 'vae_decoder') on `device`, with the weights of `seed`
    drawn on that device type."""
    cfg = VARIANTS[variant]
    with _NoDefaultInit():
        if part == "text_encoder":
            m: nn.Module = TextEncoder(cfg["text"])
        elif part == "unet":
            m = UNet(cfg["unet"])
        elif part == "vae_decoder":
            m = VaeDecoder(cfg["vae"])
        else:
            raise ValueError(part)
    m = m.to(device)
    init_weights(m, seed * 10 + PART_SEED_OFFSET[part])
    return m.eval()


def fingerprint(module: nn.Module) -> float:
    """A cheap checksum of the weights: sum over parameters of mean(|p|) * (index+1)."""
    total = 0.0
    with torch.no_grad():
        for i, p in enumerate(module.parameters()):
            total += float(p.detach().float().abs().mean()) * (i + 1)
    return round(total, 6)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
