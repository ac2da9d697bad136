#!/usr/bin/env python3
"""Trains FuseGraph's two demo models of the "shapes world" and exports them as SD 1.x-style ONNX folders.

    general  "photo" style: shaded shapes on textured, noisy backgrounds; follows the position words;
             never sees a star.
    cartoon  flat colours with dark outlines on a plain light background; knows all four shapes including
             the star; always draws them large and near the centre (ignores the position words).

Both are small pixel-space text-to-image diffusion models (UNet with cross-attention, epsilon prediction, SD's
scaled-linear betas) that share ONE text encoder, trained jointly with both UNets, the way SD 1.x and its
fine-tunes (e.g. Anything-v3) share the frozen CLIP text encoder. FuseGraph's MagicFusion graphs encode the
expert's prompt with the BASE model's text encoder (as the paper's code does), so the two UNets must
understand the same embeddings.

Everything is rendered on the fly with torch ops (signed-distance masks), on the training device.
Needs only PyTorch (1.13 or 2.x); no diffusers / transformers / onnx packages.

    python3 tools/demo-models/train.py --device cuda --seconds 190 --out models/demo --samples OUTDIR
    python3 tools/demo-models/train.py --tiny --device cpu --seconds 20 --out /tmp/demo-smoke

See tools/demo-models/README.md.
"""

import argparse
import copy
import inspect
import json
import math
import os
import re
import struct
import sys
import time
import unicodedata
import warnings
import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------------------------------------------

COLOURS = ["red", "green", "blue", "yellow"]
# Saturated palette; the hues (0, 130, 227, 52 degrees) are far apart so a hue mask separates them.
PALETTE = [(0.86, 0.12, 0.12), (0.12, 0.68, 0.22), (0.16, 0.32, 0.90), (0.95, 0.84, 0.12)]
SHAPES = ["circle", "square", "triangle", "star"]
POSITIONS = ["on the left", "on the right", "at the top", "at the bottom", "in the center"]
# (x, y) in [0, 1], y down (row 0 is the top of the image).
POSITION_XY = [(0.27, 0.5), (0.73, 0.5), (0.5, 0.27), (0.5, 0.73), (0.5, 0.5)]
KINDS = ["general", "cartoon"]


def prompt_of(colour, shape, position):
    return "a %s %s %s" % (COLOURS[colour], SHAPES[shape], POSITIONS[position])


ALL_PROMPTS = [prompt_of(c, s, p) for c in range(4) for s in range(4) for p in range(5)]  # index c*20 + s*5 + p


# ---------------------------------------------------------------------------------------------------------------
# CLIP byte-level BPE over a small vocabulary (what server/sd/tokenizer.ts runs on the exported files)
# ---------------------------------------------------------------------------------------------------------------

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MAX_LENGTH = 77
# The CLIP pre-tokenizer regex with \p{L} / \p{N} spelled in Python's re (exact for letters, digits,
# punctuation and whitespace, which is all the world's prompts contain).
PRETOKEN = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+")


def bytes_to_unicode():
    """GPT-2/CLIP's byte -> printable character table, in CLIP's vocab order (the `bs` order)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [(b, chr(c)) for b, c in zip(bs, cs)]


class ClipBpe:
    """CLIP BPE: NFC, whitespace runs -> ' ', lowercase, pre-tokenize, bytes -> symbols, merges by rank, '</w>'."""

    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.byte_symbol = dict(bytes_to_unicode())
        self.bos = vocab[BOS]
        self.eos = vocab[EOS]

    def bpe_symbols(self, word):
        syms = [self.byte_symbol[b] for b in word.encode("utf-8")]
        syms[-1] = syms[-1] + "</w>"
        while len(syms) > 1:
            best = None
            for pair in zip(syms, syms[1:]):
                r = self.ranks.get(pair)
                if r is not None and (best is None or r < best[0]):
                    best = (r, pair)
            if best is None:
                break
            a, b = best[1]
            out = []
            i = 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            syms = out
        return syms

    def encode(self, text):
        """BOS + tokens + EOS, truncated and right-padded with EOS to 77 (SD 1.x padding)."""
        text = unicodedata.normalize("NFC", text)
        text = re.sub(r"\s+", " ", text).lower()
        ids = [self.bos]
        for piece in PRETOKEN.findall(text):
            if piece in (BOS, EOS):
                ids.append(self.vocab[piece])
            else:
                ids.extend(self.vocab.get(s, self.eos) for s in self.bpe_symbols(piece))
        ids = ids[: MAX_LENGTH - 1] + [self.eos]
        return ids + [self.eos] * (MAX_LENGTH - len(ids))


def build_tokenizer(words):
    """A CLIP-format vocabulary: the 256 byte symbols, their '</w>' forms, just the merges that turn every world
    word into ONE token (added greedily until BPE agrees), then <|startoftext|> and <|endoftext|>."""
    symbols = [s for _, s in bytes_to_unicode()]
    vocab_list = symbols + [s + "</w>" for s in symbols]
    vocab = {s: i for i, s in enumerate(vocab_list)}
    merges = []
    tok = ClipBpe({**vocab, BOS: -1, EOS: -2}, merges)
    for _ in range(100):
        changed = False
        for w in words:
            while True:
                syms = tok.bpe_symbols(w)
                if len(syms) == 1:
                    break
                # A new merge gets the worst rank, so it never changes how already-merged words split.
                pair = (syms[0], syms[1])
                merges.append(pair)
                tok.ranks[pair] = len(merges) - 1
                if pair[0] + pair[1] not in vocab:
                    vocab[pair[0] + pair[1]] = len(vocab_list)
                    vocab_list.append(pair[0] + pair[1])
                changed = True
        if not changed:
            break
    vocab[BOS] = len(vocab_list)
    vocab_list.append(BOS)
    vocab[EOS] = len(vocab_list)
    vocab_list.append(EOS)
    return ClipBpe(vocab, merges), merges


def world_words():
    words = []
    for p in ALL_PROMPTS:
        for w in p.split():
            if w not in words:
                words.append(w)
    return words


def write_tokenizer(tok, merges, folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(tok.vocab, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (a, b))
    specials = {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS}
    write_json(os.path.join(folder, "special_tokens_map.json"), specials)
    write_json(
        os.path.join(folder, "tokenizer_config.json"),
        {"model_max_length": MAX_LENGTH, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer", **specials},
    )


# ---------------------------------------------------------------------------------------------------------------
# Rendering (batched torch ops on the training device)
# ---------------------------------------------------------------------------------------------------------------


def polygon_sdf(p, v):
    """Signed distance (negative inside) from points p [n,P,2] to closed polygons v [n,K,2] (even-odd rule)."""
    a = v
    b = torch.roll(v, -1, dims=1)
    e = (b - a)[:, None]  # [n,1,K,2]
    w = p[:, :, None, :] - a[:, None]  # [n,P,K,2]
    h = ((w * e).sum(-1) / (e * e).sum(-1).clamp_min(1e-12)).clamp(0, 1)
    dist = (w - e * h[..., None]).norm(dim=-1).min(-1).values
    ay = a[:, None, :, 1]
    by = b[:, None, :, 1]
    ax = a[:, None, :, 0]
    bx = b[:, None, :, 0]
    px = p[..., 0:1]
    py = p[..., 1:2]
    crosses = (ay > py) != (by > py)
    dy = torch.where(crosses, by - ay, torch.ones_like(ay))
    x_at = (bx - ax) * (py - ay) / dy + ax
    inside = ((crosses & (px < x_at)).sum(-1) % 2) == 1
    return torch.where(inside, -dist, dist)


def regular_vertices(centre, radius, count, rot, inner=None):
    """Vertices [n,K,2] of a regular polygon (or a star when `inner` is a ratio), first vertex pointing up."""
    k = count * (2 if inner is not None else 1)
    idx = torch.arange(k, device=centre.device, dtype=centre.dtype)
    ang = -math.pi / 2 + idx * (2 * math.pi / k) + rot[:, None]
    r = radius[:, None].expand(-1, k)
    if inner is not None:
        r = torch.where(idx.long() % 2 == 1, r * inner, r)
    return centre[:, None, :] + torch.stack([torch.cos(ang), torch.sin(ang)], -1) * r[..., None]


def shape_sdf(p, shape, centre, radius, rot):
    """SDF [n,P] of each sample's shape (0 circle, 1 square, 2 triangle, 3 star) of size `radius`."""
    circle = (p - centre[:, None]).norm(dim=-1) - radius[:, None]
    square = polygon_sdf(p, regular_vertices(centre, radius * 1.16, 4, rot + math.pi / 4))
    # The triangle's centroid sits a bit low so it looks centred.
    tri_centre = centre + torch.stack([torch.zeros_like(radius), radius * 0.12], -1)
    triangle = polygon_sdf(p, regular_vertices(tri_centre, radius * 1.3, 3, rot))
    star = polygon_sdf(p, regular_vertices(centre, radius * 1.25, 5, rot, inner=0.47))
    sdfs = torch.stack([circle, square, triangle, star], 0)  # [4,n,P]
    return sdfs.gather(0, shape[None, :, None].expand(1, -1, p.shape[1]))[0]


def smooth_noise(n, channels, cells, res, device):
    """Gaussian noise on a cells x cells grid, bilinearly upsampled: blotchy low-frequency texture."""
    g = torch.randn(n, channels, cells, cells, device=device)
    return F.interpolate(g, size=(res, res), mode="bilinear", align_corners=False)


def render(kind, n, res, device, colour=None, shape=None, position=None):
    """A batch of the world: (images [n,3,res,res] in [-1,1], prompt indices [n] into ALL_PROMPTS)."""
    dev = device
    if colour is None:
        colour = torch.randint(0, 4, (n,), device=dev)
    if shape is None:
        shape = torch.randint(0, 3 if kind == "general" else 4, (n,), device=dev)  # general never sees a star
    if position is None:
        position = torch.randint(0, 5, (n,), device=dev)
    u = lambda lo, hi, *s: torch.rand(*(s or (n,)), device=dev) * (hi - lo) + lo  # noqa: E731
    palette = torch.tensor(PALETTE, device=dev)
    pos_xy = torch.tensor(POSITION_XY, device=dev)
    ys, xs = torch.meshgrid(torch.arange(res, device=dev), torch.arange(res, device=dev), indexing="ij")
    p = torch.stack([(xs.float() + 0.5) / res, (ys.float() + 0.5) / res], -1).reshape(1, -1, 2).expand(n, -1, -1)
    px = 1.0 / res
    rot = u(-0.14, 0.14)
    if kind == "general":
        centre = pos_xy[position] + u(-0.05, 0.05, n, 2)
        radius = u(0.14, 0.20)
    else:
        centre = 0.5 + u(-0.04, 0.04, n, 2)
        radius = u(0.29, 0.36)
    d = shape_sdf(p, shape, centre, radius, rot)  # [n,P]
    cover = (0.5 - d / px).clamp(0, 1)
    col = (palette[colour] + u(-0.04, 0.04, n, 3)).clamp(0, 1)  # [n,3]
    P = res * res
    if kind == "general":
        # Textured, noisy, unevenly lit background of low saturation.
        lum = u(0.25, 0.75)[:, None, None]
        tint = u(-0.04, 0.04, n, 3)[:, :, None]
        bg = lum + tint + 0.10 * smooth_noise(n, 1, 4, res, dev).reshape(n, 1, P)
        bg = bg + 0.06 * smooth_noise(n, 1, 8, res, dev).reshape(n, 1, P) + 0.025 * smooth_noise(n, 3, 6, res, dev).reshape(n, 3, P)
        ang = u(0, 2 * math.pi)
        ramp = (p[..., 0] - 0.5) * torch.cos(ang)[:, None] + (p[..., 1] - 0.5) * torch.sin(ang)[:, None]
        bg = bg + 0.18 * ramp[:, None, :]
        # Soft drop shadow down-right of the object.
        ds = shape_sdf(p, shape, centre + 0.045, radius, rot)
        shadow = (0.5 - ds / (2.5 * px)).clamp(0, 1)
        bg = bg * (1 - 0.45 * shadow[:, None, :])
        # Shaded object: lit from the top left, darker towards its rim, a little grain.
        rel = (p - centre[:, None]) / radius[:, None, None]
        light = 0.8 - 0.28 * (rel[..., 0] + rel[..., 1])
        rim = 0.72 + 0.28 * (-d / (0.45 * radius[:, None])).clamp(0, 1).sqrt()
        obj = col[:, :, None] * (light * rim)[:, None, :]
        obj = obj + 0.03 * torch.randn(n, 1, P, device=dev)
        img = bg * (1 - cover[:, None]) + obj * cover[:, None]
        img = img + 0.03 * torch.randn(n, 1, P, device=dev) + 0.015 * torch.randn(n, 3, P, device=dev)
    else:
        # Plain light background, flat fill, dark outline.
        bg = u(0.86, 0.97)[:, None, None] + u(-0.03, 0.03, n, 3)[:, :, None]
        img = bg * (1 - cover[:, None]) + col[:, :, None] * cover[:, None]
        t = 1.4 * px
        outline = ((0.5 - (d - 0.35 * t) / px).clamp(0, 1) * (0.5 + (d + t) / px).clamp(0, 1))[:, None]
        img = img * (1 - outline) + 0.08 * outline
    img = img.clamp(0, 1).reshape(n, 3, res, res) * 2 - 1
    return img, colour * 20 + shape * 5 + position


# ---------------------------------------------------------------------------------------------------------------
# Models. Every weight is read through `w()`, so an export with float16 weights casts them to float32 inside the
# graph (float32 I/O, half the file size) while training keeps float32 master weights.
# ---------------------------------------------------------------------------------------------------------------


def w(t):
    return t.float() if t is not None and t.dtype == torch.float16 else t


class Linear(nn.Linear):
    def forward(self, x):
        return F.linear(x, w(self.weight), w(self.bias))


class Conv(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(x, w(self.weight), w(self.bias), self.stride, self.padding)


def f32(x):
    return x if x.dtype == torch.float32 else x.float()


# Normalisations run in float32 under autocast too (as CUDA autocast does; CPU autocast would not).
class GroupNorm(nn.GroupNorm):
    def forward(self, x):
        return F.group_norm(f32(x), self.num_groups, f32(self.weight), f32(self.bias), self.eps)


class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        return F.layer_norm(f32(x), self.normalized_shape, f32(self.weight), f32(self.bias), self.eps)


def groups(c):
    return 32 if c % 32 == 0 and c >= 64 else 8 if c % 8 == 0 else 1


def attention(q, k, v, heads, mask=None, causal=False):
    """q [B,N,C], k/v [B,M,C] -> [B,N,C]. SDPA when training on torch 2.x, plain matmuls when exporting."""
    b, n, c = q.shape
    m = k.shape[1]
    d = c // heads
    q = q.reshape(b, n, heads, d).transpose(1, 2)
    k = k.reshape(b, m, heads, d).transpose(1, 2)
    v = v.reshape(b, m, heads, d).transpose(1, 2)
    if hasattr(F, "scaled_dot_product_attention") and not _exporting():
        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    else:
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d))
        if mask is not None:
            s = s + mask
        o = torch.matmul(s.softmax(-1), v)
    return o.transpose(1, 2).reshape(b, n, c)


def _exporting():
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


class TextBlock(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = LayerNorm(width)
        self.qkv = Linear(width, 3 * width)
        self.proj = Linear(width, width)
        self.ln2 = LayerNorm(width)
        self.fc1 = Linear(width, 4 * width)
        self.fc2 = Linear(4 * width, width)

    def forward(self, x, mask):
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        x = x + self.proj(attention(q, k, v, self.heads, mask=mask, causal=True))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TextEncoder(nn.Module):
    """A tiny CLIP-like text transformer: token + position embeddings, causal pre-LN blocks, final LN."""

    def __init__(self, vocab_size, width, layers, heads, eos_id):
        super().__init__()
        self.eos_id = eos_id
        self.tok = nn.Parameter(torch.randn(vocab_size, width) * 0.02)
        self.pos = nn.Parameter(torch.randn(MAX_LENGTH, width) * 0.01)
        self.blocks = nn.ModuleList([TextBlock(width, heads) for _ in range(layers)])
        self.ln = LayerNorm(width)
        mask = torch.full((MAX_LENGTH, MAX_LENGTH), float("-inf")).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, input_ids):
        ids = input_ids.long()
        L = ids.shape[1]
        x = F.embedding(ids, w(self.tok)) + w(self.pos)[:L]
        mask = self.mask[:L, :L]
        for blk in self.blocks:
            x = blk(x, mask)
        x = self.ln(x)
        # CLIP's pooled output: the state at the first EOS (the highest id).
        first_eos = input_ids.float().argmax(-1)
        pooled = torch.gather(x, 1, first_eos[:, None, None].expand(-1, 1, x.shape[-1])).squeeze(1)
        return x, pooled


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000.0) / half))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, tdim):
        super().__init__()
        self.n1 = GroupNorm(groups(cin), cin)
        self.c1 = Conv(cin, cout, 3, padding=1)
        self.t = Linear(tdim, cout)
        self.n2 = GroupNorm(groups(cout), cout)
        self.c2 = Conv(cout, cout, 3, padding=1)
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)
        self.skip = Conv(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.c1(F.silu(self.n1(x)))
        h = h + self.t(temb)[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return h + (self.skip(x) if self.skip is not None else x)


class CrossAttention(nn.Module):
    """Image tokens attend to the text encoder's 77 hidden states (no self-attention, no MLP: the convs mix)."""

    def __init__(self, c, ctx_dim, head_dim=32):
        super().__init__()
        self.heads = max(1, c // head_dim)
        self.norm = GroupNorm(groups(c), c)
        self.q = Linear(c, c, bias=False)
        self.k = Linear(ctx_dim, c, bias=False)
        self.v = Linear(ctx_dim, c, bias=False)
        self.o = Linear(c, c)
        nn.init.zeros_(self.o.weight)
        nn.init.zeros_(self.o.bias)

    def forward(self, x, ctx):
        b, c, h, wd = x.shape
        t = self.norm(x).flatten(2).transpose(1, 2)  # [B,HW,C]
        o = self.o(attention(self.q(t), self.k(ctx), self.v(ctx), self.heads))
        return x + o.transpose(1, 2).reshape(b, c, h, wd)


class UNet(nn.Module):
    """Pixel-space UNet: levels at full, 1/2 and 1/4 resolution, cross-attention at the lower two; the lowest
    level's skip is added (not concatenated) to keep the parameter count small."""

    def __init__(self, channels, ctx_dim, tdim, in_ch=3, attn_levels=(1, 2)):
        super().__init__()
        c0 = channels[0]
        self.temb_dim = c0
        self.time = nn.Sequential(Linear(c0, tdim), nn.SiLU(), Linear(tdim, tdim))
        self.conv_in = Conv(in_ch, c0, 3, padding=1)
        self.down = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = c0
        last = len(channels) - 1
        for i, c in enumerate(channels):
            self.down.append(ResBlock(prev, c, tdim))
            self.down_attn.append(CrossAttention(c, ctx_dim) if i in attn_levels else nn.Identity())
            if i < last:
                self.downsample.append(Conv(c, c, 3, padding=1, stride=2))
            prev = c
        self.up = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(channels))):
            c = channels[i]
            cin = c if i == last else 2 * c
            self.up.append(ResBlock(cin, c, tdim))
            self.up_attn.append(CrossAttention(c, ctx_dim) if i in attn_levels else nn.Identity())
            if i > 0:
                self.upsample.append(Conv(c, channels[i - 1], 3, padding=1))
        self.norm_out = GroupNorm(groups(c0), c0)
        self.conv_out = Conv(c0, in_ch, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.last = last

    def forward(self, sample, timestep, encoder_hidden_states):
        ctx = encoder_hidden_states
        temb = self.time(timestep_embedding(timestep, self.temb_dim))
        h = self.conv_in(sample)
        skips = []
        for i, blk in enumerate(self.down):
            h = blk(h, temb)
            h = self.down_attn[i](h, ctx) if isinstance(self.down_attn[i], CrossAttention) else h
            skips.append(h)
            if i < self.last:
                h = self.downsample[i](h)
        for j, blk in enumerate(self.up):
            i = self.last - j
            s = skips.pop()
            h = blk(h + s if i == self.last else torch.cat([h, s], 1), temb)
            h = self.up_attn[j](h, ctx) if isinstance(self.up_attn[j], CrossAttention) else h
            if i > 0:
                h = self.upsample[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


class PixelDecoder(nn.Module):
    """The 'VAE decoder' of a pixel-space model: the latent already is the image in [-1, 1]."""

    def forward(self, latent_sample):
        return latent_sample.clamp(-1.0, 1.0)


def count(m):
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------------------------------------------------------
# Diffusion: SD's scaled-linear betas, epsilon prediction, DDIM (eta 0, "leading" spacing, steps_offset 1)
# ---------------------------------------------------------------------------------------------------------------

T = 1000


def alphas_cumprod(device):
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float().to(device)


SCHEDULER_CONFIG = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": T,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "clip_sample": False,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "trained_betas": None,
}


def ddim_timesteps(steps):
    r = T // steps
    return [i * r + 1 for i in reversed(range(steps))], r


def blur_saliency(r, k):
    """MagicFusion's 'noise to salience map': softmax_HW(k * mean_c(resize(avgpool4(|r|))))."""
    b, _, h, wd = r.shape
    a = F.avg_pool2d(r.abs(), 4, stride=1, padding=1, count_include_pad=True)
    a = F.interpolate(a, size=(h, wd), mode="bilinear", align_corners=False).mean(1).reshape(b, -1)
    return (k * a).softmax(-1).reshape(b, 1, h, wd)


@torch.no_grad()
def sample(unets, te, tok, prompts, seeds, res, device, steps=50, scale=10.0, switch_t=None):
    """DDIM samples, one per (prompt, seed). unets = [model] alone, or [base, other] for MagicFusion SNB (BASE =
    general, the same prompt for both, BASE's text encoder; SNB while t > switch_t, BASE alone after), as
    graphs/demo-fusion.json does."""
    ab = alphas_cumprod(device)
    n = len(seeds)
    if isinstance(prompts, str):
        prompts = [prompts] * n
    x = torch.stack([torch.randn(3, res, res, generator=torch.Generator().manual_seed(s)) for s in seeds]).to(device)
    ids = torch.tensor([tok.encode(p) for p in prompts] + [tok.encode("")], device=device, dtype=torch.int32)
    hidden = te(ids)[0].float()
    ctx = torch.cat([hidden[n:].expand(n, -1, -1), hidden[:n]])
    ts, r = ddim_timesteps(steps)

    def eps_of(unet, t):
        tt = torch.full((2 * n,), float(t), device=device)
        return unet(torch.cat([x, x]), tt, ctx).float().chunk(2)

    for t in ts:
        u_b, c_b = eps_of(unets[0], t)
        e = u_b + scale * (c_b - u_b)
        if len(unets) == 2 and t > switch_t:
            u_o, c_o = eps_of(unets[1], t)
            e_o = u_o + scale * (c_o - u_o)
            m = blur_saliency(scale * (c_o - u_b), 1.0) > blur_saliency(scale * (c_b - u_b), 1.0)
            e = torch.where(m, e_o, e)
        a_t = ab[t]
        a_prev = ab[t - r] if t - r >= 0 else ab[0]
        x0 = (x - (1 - a_t).sqrt() * e) / a_t.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * e
    return x.clamp(-1, 1)


# ---------------------------------------------------------------------------------------------------------------
# Image proof: PNG writer and a few measurements (tools/demo-models/measure.ts is the reference the tests use)
# ---------------------------------------------------------------------------------------------------------------


def write_png(path, img):
    """img: uint8 tensor [H,W,3]."""
    h, wd, _ = img.shape
    raw = b"".join(b"\x00" + bytes(img[y].reshape(-1).tolist()) for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", wd, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def to_uint8(x):
    """[3,H,W] in [-1,1] -> [H,W,3] uint8."""
    return ((x.float().cpu().clamp(-1, 1) / 2 + 0.5) * 255).round().to(torch.uint8).permute(1, 2, 0)


def grid(images, cols, scale=4, pad=2):
    """images: list of [3,H,W] in [-1,1] -> one uint8 [H,W,3] grid, each cell upscaled `scale`x."""
    cells = [to_uint8(F.interpolate(im[None].float().cpu(), scale_factor=scale, mode="nearest")[0]) for im in images]
    h, wd, _ = cells[0].shape
    rows = (len(cells) + cols - 1) // cols
    out = torch.full((rows * (h + pad) + pad, cols * (wd + pad) + pad, 3), 255, dtype=torch.uint8)
    for i, c in enumerate(cells):
        y = pad + (i // cols) * (h + pad)
        x = pad + (i % cols) * (wd + pad)
        out[y : y + h, x : x + wd] = c
    return out


HUE_RANGES = {"red": [(340, 360), (0, 20)], "yellow": [(40, 75)], "green": [(80, 170)], "blue": [(190, 260)]}


def largest_component(mask):
    h, wd = mask.shape
    flat = mask.reshape(-1).tolist()
    seen = [False] * len(flat)
    best = []
    for start in range(len(flat)):
        if not flat[start] or seen[start]:
            continue
        comp, stack = [], [start]
        seen[start] = True
        while stack:
            i = stack.pop()
            comp.append(i)
            y, x = divmod(i, wd)
            for j, ok in ((i - 1, x > 0), (i + 1, x < wd - 1), (i - wd, y > 0), (i + wd, y < h - 1)):
                if ok and flat[j] and not seen[j]:
                    seen[j] = True
                    stack.append(j)
        if len(comp) > len(best):
            best = comp
    out = torch.zeros(h * wd, dtype=torch.bool)
    out[best] = True
    return out.reshape(h, wd)


def measure(img, colour):
    """Prompt-colour mask stats of one [3,H,W] image in [-1,1]: area, centroid, solidity, background roughness."""
    rgb = (img.float().cpu().clamp(-1, 1) / 2 + 0.5).permute(1, 2, 0)
    mx = rgb.max(-1).values
    mn = rgb.min(-1).values
    sat = torch.where(mx > 0, (mx - mn) / mx.clamp_min(1e-6), torch.zeros_like(mx))
    r, g, b = rgb.unbind(-1)
    delta = (mx - mn).clamp_min(1e-6)
    hue = torch.where(mx == r, ((g - b) / delta) % 6, torch.where(mx == g, (b - r) / delta + 2, (r - g) / delta + 4)) * 60
    inside = torch.zeros_like(mx, dtype=torch.bool)
    for lo, hi in HUE_RANGES[colour]:
        inside |= (hue >= lo) & (hue < hi)
    mask = largest_component(inside & (sat >= 0.35) & (mx - mn >= 0.2))
    h, wd = mask.shape
    lum = rgb.mean(-1)
    dil = F.max_pool2d(mask[None, None].float(), 5, stride=1, padding=2)[0, 0] > 0
    bg = ~dil
    dx = (lum[:, 1:] - lum[:, :-1]).abs()[bg[:, 1:] & bg[:, :-1]]
    rough = float(dx.mean()) if dx.numel() else 0.0
    pts = mask.nonzero().tolist()
    if not pts:
        return {"area": 0.0, "x": None, "y": None, "solidity": None, "roughness": rough}
    ys = sum(p[0] for p in pts) / len(pts)
    xs = sum(p[1] for p in pts) / len(pts)
    corners = sorted({(x + dx_, y + dy_) for y, x in pts for dx_ in (0, 1) for dy_ in (0, 1)})

    def cross(o, a, b_):
        return (a[0] - o[0]) * (b_[1] - o[1]) - (a[1] - o[1]) * (b_[0] - o[0])

    hull = []
    for seq in (corners, corners[::-1]):
        part = []
        for q in seq:
            while len(part) >= 2 and cross(part[-2], part[-1], q) <= 0:
                part.pop()
            part.append(q)
        hull += part[:-1]
    hull_area = abs(sum(hull[i][0] * hull[i - 1][1] - hull[i - 1][0] * hull[i][1] for i in range(len(hull)))) / 2
    return {
        "area": len(pts) / (h * wd),
        "x": (xs + 0.5) / wd,
        "y": (ys + 0.5) / h,
        "solidity": len(pts) / hull_area if hull_area > 0 else None,
        "roughness": rough,
    }


# ---------------------------------------------------------------------------------------------------------------
# ONNX export
# ---------------------------------------------------------------------------------------------------------------


def onnx_export(module, args, path, input_names, output_names, dynamic_axes):
    kw = dict(
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        opset_version=17,
        # Folding would turn Cast(float16 weight) back into float32 weights and double the file.
        do_constant_folding=False,
    )
    params = inspect.signature(torch.onnx.export).parameters
    if "dynamo" in params:
        kw["dynamo"] = False  # the TorchScript exporter: no onnx / onnxscript packages needed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, args, path, **kw)
        except Exception as err:
            if "dynamo" not in params:
                raise
            # A torch without the TorchScript exporter: the dynamo one (needs onnx + onnxscript), with its
            # optimizer off so the float16 weights are not folded back into float32 ones.
            log("TorchScript ONNX export failed (%r); retrying with dynamo=True" % (err,))
            kw["dynamo"] = True
            for key, value in (("optimize", False), ("external_data", False)):
                if key in params:
                    kw[key] = value
            torch.onnx.export(module, args, path, **kw)


class _TextEncoderExport(nn.Module):
    def __init__(self, te):
        super().__init__()
        self.te = te

    def forward(self, input_ids):
        return self.te(input_ids)


def export_folder(folder, kind, unet, te, tok, merges, cfg, info):
    """Writes one SD 1.x-style ONNX folder (diffusers layout) with float16 weights and float32 I/O."""
    res = cfg["res"]
    width = cfg["text_width"]
    for sub in ("text_encoder", "unet", "vae_decoder", "tokenizer", "scheduler"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    unet = copy.deepcopy(unet).cpu().half().eval()
    te = copy.deepcopy(te).cpu().half().eval()
    ids = torch.tensor([tok.encode("a red star on the left"), tok.encode("")], dtype=torch.int32)
    onnx_export(
        _TextEncoderExport(te),
        (ids,),
        os.path.join(folder, "text_encoder", "model.onnx"),
        ["input_ids"],
        ["last_hidden_state", "pooler_output"],
        {"input_ids": {0: "batch", 1: "sequence"}, "last_hidden_state": {0: "batch", 1: "sequence"}, "pooler_output": {0: "batch"}},
    )
    with torch.no_grad():
        ctx = te(ids)[0]
    x = torch.randn(2, 3, res, res, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([981.0, 981.0])
    onnx_export(
        unet,
        (x, t, ctx),
        os.path.join(folder, "unet", "model.onnx"),
        ["sample", "timestep", "encoder_hidden_states"],
        ["out_sample"],
        {
            "sample": {0: "batch", 2: "height", 3: "width"},
            "timestep": {0: "batch"},
            "encoder_hidden_states": {0: "batch", 1: "sequence"},
            "out_sample": {0: "batch", 2: "height", 3: "width"},
        },
    )
    onnx_export(
        PixelDecoder(),
        (x[:1],),
        os.path.join(folder, "vae_decoder", "model.onnx"),
        ["latent_sample"],
        ["sample"],
        {"latent_sample": {0: "batch", 2: "height", 3: "width"}, "sample": {0: "batch", 2: "height", 3: "width"}},
    )
    write_json(
        os.path.join(folder, "vae_decoder", "config.json"),
        {
            "_class_name": "FuseGraphPixelDecoder",
            "scaling_factor": 1.0,
            "block_out_channels": [64],  # one block -> upsampling factor 2^0 = 1
            "latent_channels": 3,
            "out_channels": 3,
        },
    )
    write_json(
        os.path.join(folder, "unet", "config.json"),
        {
            "_class_name": "FuseGraphPixelUNet",
            "in_channels": 3,
            "out_channels": 3,
            "sample_size": res,
            "block_out_channels": list(cfg["channels"]),
            "cross_attention_dim": width,
            "parameters": count(unet),
        },
    )
    write_json(
        os.path.join(folder, "text_encoder", "config.json"),
        {
            "_class_name": "FuseGraphTextEncoder",
            "hidden_size": width,
            "num_hidden_layers": cfg["text_layers"],
            "max_position_embeddings": MAX_LENGTH,
            "vocab_size": len(tok.vocab),
            "parameters": count(te),
        },
    )
    write_tokenizer(tok, merges, os.path.join(folder, "tokenizer"))
    write_json(os.path.join(folder, "scheduler", "scheduler_config.json"), SCHEDULER_CONFIG)
    write_json(
        os.path.join(folder, "model_index.json"),
        {
            "_class_name": "OnnxStableDiffusionPipeline",
            "_diffusers_version": "0.8.0",
            "_fusegraph_demo": {"kind": kind, **info},
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "text_encoder": ["diffusers", "OnnxRuntimeModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "OnnxRuntimeModel"],
            "vae_decoder": ["diffusers", "OnnxRuntimeModel"],
            "vae_encoder": [None, None],
        },
    )
    return export_check(folder, unet, te, tok, res)


def check_inputs(res):
    """Deterministic UNet inputs that tools/demo-models/check-export.ts rebuilds bit for bit."""
    n = 3 * res * res
    sample = torch.tensor([math.sin(0.37 * i) for i in range(n)], dtype=torch.float32).reshape(1, 3, res, res)
    return sample, 500.0


def export_check(folder, unet, te, tok, res):
    """Reference outputs of the exported (float16-weight) modules, for an ONNX Runtime parity check."""
    prompts = ["a red star on the left", "", "A Blue  circle in the CENTER", "a purple hexagon, please!"] + ALL_PROMPTS
    ids = torch.tensor([tok.encode(p) for p in prompts[:4]], dtype=torch.int32)
    with torch.no_grad():
        hidden, pooled = te(ids)
        s, t = check_inputs(res)
        out = unet(s, torch.tensor([t]), hidden[:1])
    step = max(1, out.numel() // 64)
    check = {
        # Unpadded (BOS ... EOS); the engine right-pads to "max_length" with "pad_id".
        "prompts": {p: tok.encode(p)[: tok.encode(p).index(tok.eos) + 1] for p in prompts},
        "max_length": MAX_LENGTH,
        "pad_id": tok.eos,
        "text_encoder": {
            "prompt": prompts[0],
            "sum": float(hidden[0].double().sum()),
            "abs_sum": float(hidden[0].double().abs().sum()),
            "head": hidden[0, 0, :8].tolist(),
            "pooled_head": pooled[0, :8].tolist(),
        },
        "unet": {
            "res": res,
            "sample": "sin(0.37 * i), shape [1,3,%d,%d]" % (res, res),
            "timestep": t,
            "context": "text_encoder(prompts[0])",
            "sum": float(out.double().sum()),
            "abs_sum": float(out.double().abs().sum()),
            "stride": step,
            "values": out.reshape(-1)[::step].tolist(),
        },
    }
    check_ort(folder, check, ids, s, t)
    return check


def check_ort(folder, check, ids, s, t):
    """Where the onnxruntime Python package exists (the device image has it), compare it with PyTorch now."""
    try:
        import onnxruntime as ort  # noqa: WPS433
    except ImportError:
        check["onnxruntime_python"] = "not installed; run tools/demo-models/check-export.ts"
        return
    te = ort.InferenceSession(os.path.join(folder, "text_encoder", "model.onnx"), providers=["CPUExecutionProvider"])
    unet = ort.InferenceSession(os.path.join(folder, "unet", "model.onnx"), providers=["CPUExecutionProvider"])
    hidden = te.run(None, {"input_ids": ids.numpy()})[0]
    out = unet.run(None, {"sample": s.numpy(), "timestep": torch.tensor([t]).numpy(), "encoder_hidden_states": hidden[:1]})[0]
    check["onnxruntime_python"] = {
        "text_encoder_sum": float(hidden[0].astype("float64").sum()),
        "unet_sum": float(out.astype("float64").sum()),
        "unet_max_abs_diff": float(abs(out.reshape(-1)[:: check["unet"]["stride"]] - torch.tensor(check["unet"]["values"]).numpy()).max()),
    }


def write_json(path, obj, indent=2):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------

FULL = dict(res=32, channels=(64, 128, 192), tdim=128, text_width=128, text_layers=2, text_heads=4, batch=256)
TINY = dict(res=32, channels=(16, 32, 48), tdim=32, text_width=32, text_layers=1, text_heads=2, batch=16)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="writes OUT/general and OUT/cartoon (SD ONNX folders)")
    ap.add_argument("--samples", help="folder for sample grids, metrics.json and checkpoint.pt (default: OUT)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seconds", type=float, default=190.0, help="training time per model (trained jointly: 2x this)")
    ap.add_argument("--steps", type=int, default=0, help="fixed number of steps (reproducible); --seconds still caps")
    ap.add_argument("--deadline", type=float, default=0.0, help="stop training this many seconds after start, at the latest")
    ap.add_argument("--tiny", action="store_true", help="a minutes-on-CPU smoke test: tiny nets, small batch")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--batch", type=int, help="per model (default 256, tiny 16)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--channels", help="UNet widths per level, e.g. 64,128,192")
    ap.add_argument("--res", type=int, help="image size (default 32)")
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto", help="auto: bf16 autocast on CUDA only")
    ap.add_argument("--sample-steps", type=int, help="DDIM steps for the proof images (default 50, tiny 5)")
    ap.add_argument("--seeds", type=int, help="seeds of the fusion preview (default 8, tiny 2)")
    ap.add_argument("--no-proof", action="store_true", help="skip the sample grids and the fusion preview")
    ap.add_argument("--export-only", metavar="CHECKPOINT", help="skip training: export OUT from a checkpoint.pt")
    return ap.parse_args(argv)


def build(cfg, vocab_size, eos_id, device):
    te = TextEncoder(vocab_size, cfg["text_width"], cfg["text_layers"], cfg["text_heads"], eos_id).to(device)
    unets = {k: UNet(cfg["channels"], cfg["text_width"], cfg["tdim"]).to(device) for k in KINDS}
    return te, unets


def log(msg):
    print("[%7.1fs] %s" % (time.time() - START, msg), flush=True)


START = time.time()


def main(argv):
    args = parse_args(argv)
    cfg = dict(TINY if args.tiny else FULL)
    if args.batch:
        cfg["batch"] = args.batch
    if args.channels:
        cfg["channels"] = tuple(int(c) for c in args.channels.split(","))
    if args.res:
        cfg["res"] = args.res
    device = torch.device(args.device)
    samples_dir = args.samples or args.out
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(samples_dir, exist_ok=True)
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(args.seed)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    ck = None
    if args.export_only:
        ck = torch.load(args.export_only, map_location="cpu")
        saved = json.loads(ck["info"])["config"]
        cfg.update({k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})

    tok, merges = build_tokenizer(world_words())
    for word in world_words():
        assert len(tok.bpe_symbols(word)) == 1, word
    te, unets = build(cfg, len(tok.vocab), tok.eos, device)
    log(
        "torch %s on %s; UNet %d params each, text encoder %d (shared); vocab %d, %d merges; cfg %s"
        % (torch.__version__, device, count(unets["general"]), count(te), len(tok.vocab), len(merges), cfg)
    )

    info = {"seed": args.seed, "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}}
    if ck is not None:
        te.load_state_dict({k: v.float() for k, v in ck["text_encoder"].items()})
        for k in KINDS:
            unets[k].load_state_dict({n: v.float() for n, v in ck[k].items()})
        info.update(json.loads(ck["info"]))
    else:
        info.update(train(args, cfg, tok, te, unets, device))
        ck = {"text_encoder": {k: v.half() for k, v in te.state_dict().items()}, "info": json.dumps(info)}
        for k in KINDS:
            ck[k] = {n: v.half() for n, v in unets[k].state_dict().items()}
        torch.save(ck, os.path.join(samples_dir, "checkpoint.pt"))

    te.eval()
    for u in unets.values():
        u.eval()
    failed = False
    for k in KINDS:
        folder = os.path.join(args.out, k)
        try:
            check = export_folder(folder, k, unets[k], te, tok, merges, cfg, info)
        except Exception:  # keep going: checkpoint.pt can be exported again elsewhere (--export-only)
            import traceback

            traceback.print_exc()
            log("EXPORT FAILED for %s; `train.py --export-only checkpoint.pt` redoes it on any machine" % k)
            failed = True
            continue
        write_json(os.path.join(args.out, "%s-export-check.json" % k), check, indent=None)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)
        log("exported %s (%.2f MB); onnxruntime check: %s" % (folder, size / 1e6, json.dumps(check.get("onnxruntime_python"))))

    if not args.export_only and not args.no_proof:
        proof(args, cfg, tok, te, unets, device, samples_dir, info)
    log("done" if not failed else "done, but an export failed")
    if failed:
        sys.exit(1)


def train(args, cfg, tok, te, unets, device):
    res, batch = cfg["res"], cfg["batch"]
    amp = args.amp == "bf16" or (args.amp == "auto" and device.type == "cuda")
    prompt_ids = torch.tensor([tok.encode(p) for p in ALL_PROMPTS], device=device, dtype=torch.int32)
    empty_ids = torch.tensor(tok.encode(""), device=device, dtype=torch.int32)
    ab = alphas_cumprod(device)
    params = list(te.parameters()) + [p for u in unets.values() for p in u.parameters()]
    decay, no_decay = [p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]
    opt_kw = {"lr": args.lr, "betas": (0.9, 0.99)}
    if device.type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters:
        opt_kw["fused"] = True
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], **opt_kw)
    ema = [p.detach().clone() for p in params]

    def loss_of(kind, x0, ctx):
        n = x0.shape[0]
        t = torch.randint(0, T, (n,), device=device)
        noise = torch.randn_like(x0)
        a = ab[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = unets[kind](xt, t.float(), ctx)
        return F.mse_loss(pred.float(), noise)

    budget = args.seconds * len(KINDS)
    if args.deadline > 0:
        budget = min(budget, args.deadline - (time.time() - START))
    warmup = 200 if not args.tiny else 5
    log("training both models jointly for up to %.0f s%s" % (budget, " / %d steps" % args.steps if args.steps else ""))
    t0 = time.time()
    step = 0
    losses = {k: 0.0 for k in KINDS}
    logged = {k: [] for k in KINDS}
    while True:
        elapsed = time.time() - t0
        if elapsed >= budget or (args.steps and step >= args.steps):
            break
        frac = step / args.steps if args.steps else elapsed / budget
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.no_grad():
            xs, ids = [], []
            for k in KINDS:
                x0, idx = render(k, batch, res, device)
                drop = torch.rand(batch, device=device) < 0.1
                xs.append(x0)
                ids.append(torch.where(drop[:, None], empty_ids[None], prompt_ids[idx]))
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            ctx = te(torch.cat(ids))[0].chunk(len(KINDS))
            parts = {k: loss_of(k, xs[i], ctx[i]) for i, k in enumerate(KINDS)}
            loss = sum(parts.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        d = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_mul_(ema, d)
            torch._foreach_add_(ema, [p.detach() for p in params], alpha=1 - d)
        for k in KINDS:
            losses[k] += parts[k].detach()
        step += 1
        every = 20 if args.tiny else 250
        if step % every == 0:
            msg = []
            for k in KINDS:
                v = float(losses[k]) / every
                logged[k].append(round(v, 5))
                losses[k] = 0.0
                msg.append("%s %.4f" % (k, v))
            rate = step / (time.time() - t0)
            log("step %d  loss %s  lr %.2e  %.1f steps/s" % (step, "  ".join(msg), lr, rate))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.time() - t0
    with torch.no_grad():
        for p, e in zip(params, ema):
            p.copy_(e)
    log("trained %d steps in %.1f s (%.2f steps/s), EMA weights" % (step, seconds, step / max(seconds, 1e-9)))
    return {
        "steps": step,
        "train_seconds": round(seconds, 1),
        "batch_per_model": batch,
        "amp_bf16": amp,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "loss_every_%d_steps" % (20 if args.tiny else 250): logged,
    }


@torch.no_grad()
def proof(args, cfg, tok, te, unets, device, out, info):
    """Sample grids of both models, the fusion preview for several seeds and SwitchAtTimestep values, metrics.json."""
    res = cfg["res"]
    steps = args.sample_steps or (5 if args.tiny else 50)
    amp = args.amp == "bf16" or (args.amp == "auto" and device.type == "cuda")
    metrics = {"info": info, "sample_steps": steps, "guidance_scale": 10.0}
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        grid_prompts = [prompt_of((s + p) % 4, s, p) for s in range(4) for p in range(5)]
        for k in KINDS:
            cells = sample([unets[k]], te, tok, grid_prompts, list(range(20)), res, device, steps)
            write_png(os.path.join(out, "samples_%s.png" % k), grid(list(cells), 5))
            metrics["grid_%s" % k] = [
                dict(prompt=p, **measure(cells[i], p.split()[1])) for i, p in enumerate(grid_prompts)
            ]
            # Training data for comparison.
            cols = torch.arange(20, device=device)
            data, _ = render(k, 20, res, device, colour=(cols // 5 + cols % 5) % 4, shape=cols // 5 % (3 if k == "general" else 4), position=cols % 5)
            write_png(os.path.join(out, "data_%s.png" % k), grid(list(data), 5))
        prompt = "a red star on the left"
        seeds = list(range(args.seeds or (2 if args.tiny else 8)))
        switches = [800, 600, 400, 300, 200]
        rows = {"general": sample([unets["general"]], te, tok, prompt, seeds, res, device, steps)}
        rows["cartoon"] = sample([unets["cartoon"]], te, tok, prompt, seeds, res, device, steps)
        for sw in switches:
            rows["fused_t%d" % sw] = sample([unets["general"], unets["cartoon"]], te, tok, prompt, seeds, res, device, steps, switch_t=sw)
    cells = [rows[name][i] for i in range(len(seeds)) for name in rows]
    write_png(os.path.join(out, "fusion.png"), grid(cells, len(rows)))
    metrics["fusion_preview"] = {
        "prompt": prompt,
        "columns": list(rows),
        "note": "PyTorch DDIM with torch's noise, not the engine's; see measure.ts for the test's measurements",
        "per_seed": {name: [measure(rows[name][i], "red") for i in range(len(seeds))] for name in rows},
    }
    write_json(os.path.join(out, "metrics.json"), metrics)
    log("wrote samples_general.png, samples_cartoon.png, data_*.png, fusion.png, metrics.json to %s" % out)


if __name__ == "__main__":
    main(sys.argv[1:])
