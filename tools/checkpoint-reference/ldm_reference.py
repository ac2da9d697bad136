"""FuseGraph's independent PyTorch reference for Stable Diffusion (LDM) checkpoints.

Written from the published architecture (CompVis/stable-diffusion and Stability-AI/stablediffusion ldm/modules,
HF transformers' CLIPTextModel, open_clip's text tower). Module attribute names mirror the originals exactly, so
`state_dict()` keys ARE the real checkpoint key names (without the LatentDiffusion prefixes
`model.diffusion_model.`, `first_stage_model.`, `cond_stage_model.transformer.` / `cond_stage_model.model.`).
Dropout, checkpointing and training-only parts are left out; everything runs in float32 on the CPU.

Run with Debian's PyTorch: /usr/bin/python3 (see README.md next to this file).
"""
import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------------------------
# UNet (ldm/modules/diffusionmodules/openaimodel.py, util.py; ldm/modules/attention.py)


def timestep_embedding(timesteps, dim, max_period=10000):
    """LDM util.timestep_embedding (repeat_only=False): [cos | sin], freqs = exp(-ln(P)·arange(half)/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class GroupNorm32(nn.GroupNorm):
    """util.GroupNorm32: GroupNorm computed in float32 (eps 1e-5 by default)."""

    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


def normalization(channels):
    return GroupNorm32(32, channels)


class TimestepEmbedSequential(nn.Sequential):
    def forward(self, x, emb, context=None):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class Upsample(nn.Module):
    def __init__(self, channels, out_channels=None):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Downsample(nn.Module):
    def __init__(self, channels, out_channels=None):
        super().__init__()
        self.op = nn.Conv2d(channels, out_channels or channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class ResBlock(nn.Module):
    """openaimodel.ResBlock with use_scale_shift_norm=False, use_conv=False (1×1 skip), no up/down."""

    def __init__(self, channels, emb_channels, out_channels=None):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(normalization(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            normalization(out_channels), nn.SiLU(), nn.Dropout(p=0.0), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)
        while len(emb_out.shape) < len(h.shape):
            emb_out = emb_out[..., None]
        h = h + emb_out
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class GEGLU(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)  # exact (erf) GELU


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        inner_dim = int(dim * mult)
        self.net = nn.Sequential(GEGLU(dim, inner_dim), nn.Dropout(0.0), nn.Linear(inner_dim, dim))

    def forward(self, x):
        return self.net(x)


class CrossAttention(nn.Module):
    def __init__(self, query_dim, context_dim=None, heads=8, dim_head=64):
        super().__init__()
        inner_dim = dim_head * heads
        context_dim = context_dim or query_dim
        self.scale = dim_head**-0.5
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, query_dim), nn.Dropout(0.0))

    def forward(self, x, context=None):
        h = self.heads
        context = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)

        def split(t):  # 'b n (h d) -> (b h) n d'
            b, n, hd = t.shape
            return t.reshape(b, n, h, hd // h).permute(0, 2, 1, 3).reshape(b * h, n, hd // h)

        q, k, v = split(q), split(k), split(v)
        sim = torch.einsum("b i d, b j d -> b i j", q, k) * self.scale
        attn = sim.softmax(dim=-1)
        out = torch.einsum("b i j, b j d -> b i d", attn, v)
        bh, n, d = out.shape
        out = out.reshape(bh // h, h, n, d).permute(0, 2, 1, 3).reshape(bh // h, n, h * d)  # '(b h) n d -> b n (h d)'
        return self.to_out(out)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, n_heads, d_head, context_dim=None):
        super().__init__()
        self.attn1 = CrossAttention(query_dim=dim, heads=n_heads, dim_head=d_head)  # self-attention
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(query_dim=dim, context_dim=context_dim, heads=n_heads, dim_head=d_head)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x, context=None):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context=context) + x
        x = self.ff(self.norm3(x)) + x
        return x


def Normalize(in_channels, num_groups=32):
    """attention.Normalize / model.Normalize: GroupNorm(32, eps 1e-6, affine)."""
    return nn.GroupNorm(num_groups=num_groups, num_channels=in_channels, eps=1e-6, affine=True)


class SpatialTransformer(nn.Module):
    """SD-1: 1×1 conv proj_in/proj_out around 'b c h w -> b (h w) c'. SD-2 (use_linear): rearrange first, then Linear."""

    def __init__(self, in_channels, n_heads, d_head, depth=1, context_dim=None, use_linear=False):
        super().__init__()
        inner_dim = n_heads * d_head
        self.use_linear = use_linear
        self.norm = Normalize(in_channels)
        self.proj_in = nn.Linear(in_channels, inner_dim) if use_linear else nn.Conv2d(in_channels, inner_dim, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner_dim, n_heads, d_head, context_dim=context_dim) for _ in range(depth)]
        )
        self.proj_out = nn.Linear(inner_dim, in_channels) if use_linear else nn.Conv2d(inner_dim, in_channels, 1)

    def forward(self, x, context=None):
        b, c, h, w = x.shape
        x_in = x
        x = self.norm(x)
        if not self.use_linear:
            x = self.proj_in(x)
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, -1).contiguous()  # 'b c h w -> b (h w) c'
        if self.use_linear:
            x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x, context=context)
        if self.use_linear:
            x = self.proj_out(x)
        x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()  # 'b (h w) c -> b c h w'
        if not self.use_linear:
            x = self.proj_out(x)
        return x + x_in


class UNetModel(nn.Module):
    """openaimodel.UNetModel (dims 2, conv_resample, no class/adm embedding, legacy False).

    attention_resolutions are downsample factors ds (1 = first level, 2 = second, ...), as in LDM.
    num_head_channels == -1: fixed num_heads (SD-1); otherwise heads = ch // num_head_channels (SD-2).
    """

    def __init__(self, in_channels=4, out_channels=4, model_channels=320, attention_resolutions=(4, 2, 1),
                 num_res_blocks=2, channel_mult=(1, 2, 4, 4), num_heads=8, num_head_channels=-1,
                 transformer_depth=1, context_dim=768, use_linear_in_transformer=False):
        super().__init__()
        self.model_channels = model_channels
        time_embed_dim = model_channels * 4
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim)
        )

        def heads_for(ch):
            if num_head_channels == -1:
                return num_heads, ch // num_heads
            return ch // num_head_channels, num_head_channels

        def transformer(ch):
            nh, dh = heads_for(ch)
            return SpatialTransformer(ch, nh, dh, depth=transformer_depth, context_dim=context_dim,
                                      use_linear=use_linear_in_transformer)

        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        input_block_chans = [model_channels]
        ch = model_channels
        ds = 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, time_embed_dim, out_channels=mult * model_channels)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers.append(transformer(ch))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                input_block_chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch, out_channels=ch)))
                input_block_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, time_embed_dim), transformer(ch), ResBlock(ch, time_embed_dim)
        )

        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                ich = input_block_chans.pop()
                layers = [ResBlock(ch + ich, time_embed_dim, out_channels=model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions:
                    layers.append(transformer(ch))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch, out_channels=ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(normalization(ch), nn.SiLU(), nn.Conv2d(model_channels, out_channels, 3, padding=1))

    def forward(self, x, timesteps, context=None):
        hs = []
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        h = x
        for module in self.input_blocks:
            h = module(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for module in self.output_blocks:
            h = torch.cat([h, hs.pop()], dim=1)
            h = module(h, emb, context)
        return self.out(h)


# ----------------------------------------------------------------------------------------------------------------
# VAE (ldm/modules/diffusionmodules/model.py, ldm/models/autoencoder.py)


def nonlinearity(x):
    return x * torch.sigmoid(x)


class VaeUpsample(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, stride=1, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class VaeDownsample(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))  # asymmetric: right and bottom


class ResnetBlock(nn.Module):
    def __init__(self, in_channels, out_channels=None):
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)
        self.norm2 = Normalize(out_channels)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=1, padding=0)
        self.has_shortcut = in_channels != out_channels

    def forward(self, x):
        h = self.conv1(nonlinearity(self.norm1(x)))
        h = self.conv2(self.dropout(nonlinearity(self.norm2(h))))
        if self.has_shortcut:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.norm = Normalize(in_channels)
        self.q = nn.Conv2d(in_channels, in_channels, 1)
        self.k = nn.Conv2d(in_channels, in_channels, 1)
        self.v = nn.Conv2d(in_channels, in_channels, 1)
        self.proj_out = nn.Conv2d(in_channels, in_channels, 1)

    def forward(self, x):
        h_ = self.norm(x)
        q, k, v = self.q(h_), self.k(h_), self.v(h_)
        b, c, h, w = q.shape
        q = q.reshape(b, c, h * w).permute(0, 2, 1)  # b,hw,c
        k = k.reshape(b, c, h * w)  # b,c,hw
        w_ = torch.bmm(q, k) * (int(c) ** (-0.5))
        w_ = F.softmax(w_, dim=2)
        v = v.reshape(b, c, h * w)
        h_ = torch.bmm(v, w_.permute(0, 2, 1)).reshape(b, c, h, w)
        return x + self.proj_out(h_)


class Encoder(nn.Module):
    def __init__(self, ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, attn_resolutions=(), in_channels=3,
                 resolution=256, z_channels=4, double_z=True):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, stride=1, padding=1)
        curr_res = resolution
        in_ch_mult = (1,) + tuple(ch_mult)
        self.down = nn.ModuleList()
        for i_level in range(self.num_resolutions):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i_level], ch * ch_mult[i_level]
            for _ in range(num_res_blocks):
                block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in))
            down = nn.Module()
            down.block, down.attn = block, attn
            if i_level != self.num_resolutions - 1:
                down.downsample = VaeDownsample(block_in)
                curr_res //= 2
            self.down.append(down)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, stride=1, padding=1)

    def forward(self, x):
        hs = [self.conv_in(x)]
        for i_level in range(self.num_resolutions):
            for i_block in range(self.num_res_blocks):
                h = self.down[i_level].block[i_block](hs[-1])
                if len(self.down[i_level].attn) > 0:
                    h = self.down[i_level].attn[i_block](h)
                hs.append(h)
            if i_level != self.num_resolutions - 1:
                hs.append(self.down[i_level].downsample(hs[-1]))
        h = hs[-1]
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(nonlinearity(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch=128, out_ch=3, ch_mult=(1, 2, 4, 4), num_res_blocks=2, attn_resolutions=(),
                 resolution=256, z_channels=4):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        block_in = ch * ch_mult[self.num_resolutions - 1]
        curr_res = resolution // 2 ** (self.num_resolutions - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, stride=1, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in)
        self.up = nn.ModuleList()
        for i_level in reversed(range(self.num_resolutions)):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[i_level]
            for _ in range(num_res_blocks + 1):
                block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in))
            up = nn.Module()
            up.block, up.attn = block, attn
            if i_level != 0:
                up.upsample = VaeUpsample(block_in)
                curr_res *= 2
            self.up.insert(0, up)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, stride=1, padding=1)

    def forward(self, z):
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for i_level in reversed(range(self.num_resolutions)):
            for i_block in range(self.num_res_blocks + 1):
                h = self.up[i_level].block[i_block](h)
                if len(self.up[i_level].attn) > 0:
                    h = self.up[i_level].attn[i_block](h)
            if i_level != 0:
                h = self.up[i_level].upsample(h)
        return self.conv_out(nonlinearity(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, embed_dim=4, ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, attn_resolutions=(),
                 z_channels=4, double_z=True, in_channels=3, out_ch=3, resolution=256):
        super().__init__()
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, attn_resolutions, in_channels, resolution, z_channels, double_z)
        self.decoder = Decoder(ch, out_ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels)
        self.quant_conv = nn.Conv2d(2 * z_channels, 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.embed_dim = embed_dim

    def encode_mean(self, x):
        """Mean of the DiagonalGaussianDistribution: the first embed_dim channels of quant_conv(encoder(x))."""
        return self.quant_conv(self.encoder(x))[:, : self.embed_dim]

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


# ----------------------------------------------------------------------------------------------------------------
# SD-1 text encoder: HF transformers CLIPTextModel (FrozenCLIPEmbedder.transformer)


def causal_mask(n, dtype=torch.float32):
    return torch.full((n, n), float("-inf"), dtype=dtype).triu_(1)


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, vocab_size, width, max_positions):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Embedding(max_positions, width)
        self.register_buffer("position_ids", torch.arange(max_positions, dtype=torch.int64).expand((1, -1)))

    def forward(self, input_ids):
        n = input_ids.shape[-1]
        return self.token_embedding(input_ids) + self.position_embedding(self.position_ids[:, :n])


class CLIPAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.scale = self.head_dim**-0.5
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x, mask):
        b, n, w = x.shape

        def split(t):
            return t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q_proj(x) * self.scale), split(self.k_proj(x)), split(self.v_proj(x))
        attn = (q @ k.transpose(-1, -2) + mask).softmax(dim=-1)
        return self.out_proj((attn @ v).transpose(1, 2).reshape(b, n, w))


class CLIPMLP(nn.Module):
    def __init__(self, width, intermediate):
        super().__init__()
        self.fc1 = nn.Linear(width, intermediate)
        self.fc2 = nn.Linear(intermediate, width)

    def forward(self, x):
        x = self.fc1(x)
        x = x * torch.sigmoid(1.702 * x)  # quick_gelu
        return self.fc2(x)


class CLIPEncoderLayer(nn.Module):
    def __init__(self, width, heads, intermediate):
        super().__init__()
        self.self_attn = CLIPAttention(width, heads)
        self.layer_norm1 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = CLIPMLP(width, intermediate)
        self.layer_norm2 = nn.LayerNorm(width, eps=1e-5)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, width, heads, layers, intermediate):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(width, heads, intermediate) for _ in range(layers)])


class CLIPTextTransformer(nn.Module):
    def __init__(self, vocab_size, width, layers, heads, max_positions, intermediate):
        super().__init__()
        self.embeddings = CLIPTextEmbeddings(vocab_size, width, max_positions)
        self.encoder = CLIPEncoder(width, heads, layers, intermediate)
        self.final_layer_norm = nn.LayerNorm(width, eps=1e-5)


class CLIPTextModel(nn.Module):
    """forward(ids) -> (last_hidden_state after final_layer_norm, hidden_states tuple of layers+1 entries).

    hidden_states[0] is the embedding output, hidden_states[i] the output of layer i (no final norm), as in HF.
    SD-1 conditions on last_hidden_state; "CLIP skip 2" = final_layer_norm(hidden_states[-2]).
    """

    def __init__(self, vocab_size=49408, width=768, layers=12, heads=12, max_positions=77, intermediate=None):
        super().__init__()
        self.text_model = CLIPTextTransformer(vocab_size, width, layers, heads, max_positions, intermediate or 4 * width)

    def forward(self, input_ids):
        tm = self.text_model
        x = tm.embeddings(input_ids)
        mask = causal_mask(x.shape[1], x.dtype)
        hidden = [x]
        for layer in tm.encoder.layers:
            x = layer(x, mask)
            hidden.append(x)
        return tm.final_layer_norm(x), tuple(hidden)

    def clip_skip(self, input_ids, skip):
        """skip 1 = last_hidden_state; skip k = final_layer_norm(hidden_states[-k])."""
        last, hidden = self(input_ids)
        return last if skip == 1 else self.text_model.final_layer_norm(hidden[-skip])


# ----------------------------------------------------------------------------------------------------------------
# SD-2 text encoder: open_clip text tower as FrozenOpenCLIPEmbedder.model (visual deleted)


class OpenCLIPMultiheadAttention(nn.Module):
    """The parameters of torch.nn.MultiheadAttention (fused in_proj q|k|v, out_proj)."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x, mask):  # x: b, n, w (batch first here; the math is the same as open_clip's n, b, w)
        b, n, w = x.shape
        hd = w // self.heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)

        def split(t):
            return t.reshape(b, n, self.heads, hd).transpose(1, 2)

        q, k, v = split(q), split(k), split(v)
        attn = ((q * hd**-0.5) @ k.transpose(-1, -2) + mask).softmax(dim=-1)
        return self.out_proj((attn @ v).transpose(1, 2).reshape(b, n, w))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads, mlp_ratio=4.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = OpenCLIPMultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, hidden)), ("gelu", nn.GELU()),
                                              ("c_proj", nn.Linear(hidden, width))]))

    def forward(self, x, mask):
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class OpenCLIPTransformer(nn.Module):
    def __init__(self, width, layers, heads):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])


class OpenCLIPTextTower(nn.Module):
    def __init__(self, vocab_size=49408, width=1024, layers=24, heads=16, context_length=77, embed_dim=1024):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self.transformer = OpenCLIPTransformer(width, layers, heads)
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.ln_final = nn.LayerNorm(width)

    def encode(self, ids, layer="penultimate"):
        """FrozenOpenCLIPEmbedder.encode_with_transformer: layer_idx 1 (penultimate) or 0 (last), then ln_final."""
        layer_idx = {"last": 0, "penultimate": 1}[layer]
        x = self.token_embedding(ids) + self.positional_embedding
        mask = causal_mask(x.shape[1], x.dtype)
        blocks = self.transformer.resblocks
        for i, r in enumerate(blocks):
            if i == len(blocks) - layer_idx:
                break
            x = r(x, mask)
        return self.ln_final(x)


# ----------------------------------------------------------------------------------------------------------------
# Schedules and DDIM (ldm/modules/diffusionmodules/util.py, ldm/models/diffusion/ddpm.py, ddim.py)


def make_beta_schedule_linear(n_timestep=1000, linear_start=0.00085, linear_end=0.012):
    """make_beta_schedule('linear'): torch.linspace(sqrt(start), sqrt(end), n, float64) ** 2, as numpy float64."""
    return (torch.linspace(linear_start**0.5, linear_end**0.5, n_timestep, dtype=torch.float64) ** 2).numpy()


def ldm_schedule_buffers(n_timestep=1000, linear_start=0.00085, linear_end=0.012):
    """DDPM.register_schedule (eps parameterization, v_posterior 0): float64 numpy → float32 buffers, LDM order."""
    betas = make_beta_schedule_linear(n_timestep, linear_start, linear_end)
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas, axis=0)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    buf = OrderedDict()
    buf["betas"] = f(betas)
    buf["alphas_cumprod"] = f(alphas_cumprod)
    buf["alphas_cumprod_prev"] = f(alphas_cumprod_prev)
    buf["sqrt_alphas_cumprod"] = f(np.sqrt(alphas_cumprod))
    buf["sqrt_one_minus_alphas_cumprod"] = f(np.sqrt(1.0 - alphas_cumprod))
    buf["log_one_minus_alphas_cumprod"] = f(np.log(1.0 - alphas_cumprod))
    buf["sqrt_recip_alphas_cumprod"] = f(np.sqrt(1.0 / alphas_cumprod))
    buf["sqrt_recipm1_alphas_cumprod"] = f(np.sqrt(1.0 / alphas_cumprod - 1))
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    buf["posterior_variance"] = f(posterior_variance)
    buf["posterior_log_variance_clipped"] = f(np.log(np.maximum(posterior_variance, 1e-20)))
    buf["posterior_mean_coef1"] = f(betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod))
    buf["posterior_mean_coef2"] = f((1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod))
    lvlb = buf["betas"] ** 2 / (2 * buf["posterior_variance"] * f(alphas) * (1 - buf["alphas_cumprod"]))
    lvlb[0] = lvlb[1]
    buf["lvlb_weights"] = lvlb
    return buf


def ddim_timesteps(steps, n_train=1000):
    """make_ddim_timesteps('uniform'): range(0, T, T // S) + 1 (ascending)."""
    c = n_train // steps
    return np.asarray(list(range(0, n_train, c))) + 1


@torch.no_grad()
def ddim_sample(unet, cond, uncond, x_T, steps, guidance, alphas_cumprod):
    """DDIMSampler.sample with eta 0 and classifier-free guidance (batch = [uncond, cond], like LDM).

    alphas_cumprod: the model's float32 buffer. Returns x_0, the per-step records and every intermediate x.
    """
    ts = ddim_timesteps(steps, alphas_cumprod.shape[0])
    alphas = alphas_cumprod[ts]  # float32
    alphas_prev = np.asarray([alphas_cumprod[0].item()] + alphas_cumprod[ts[:-1]].tolist())
    sqrt_one_minus_alphas = torch.sqrt(1.0 - alphas)
    x = x_T.clone()
    b = x.shape[0]
    records, xs = [], []
    time_range = np.flip(ts)
    for i, step in enumerate(time_range):
        index = len(ts) - i - 1
        t = torch.full((b,), int(step), dtype=torch.long)
        x_in = torch.cat([x] * 2)
        t_in = torch.cat([t] * 2)
        c_in = torch.cat([uncond, cond])
        e_uncond, e_cond = unet(x_in, t_in, c_in).chunk(2)
        e_t = e_uncond + guidance * (e_cond - e_uncond)
        a_t = torch.full((b, 1, 1, 1), alphas[index].item())
        a_prev = torch.full((b, 1, 1, 1), float(alphas_prev[index]))
        sqrt_one_minus_at = torch.full((b, 1, 1, 1), sqrt_one_minus_alphas[index].item())
        sigma_t = torch.zeros((b, 1, 1, 1))
        pred_x0 = (x - sqrt_one_minus_at * e_t) / a_t.sqrt()
        dir_xt = (1.0 - a_prev - sigma_t**2).sqrt() * e_t
        x = a_prev.sqrt() * pred_x0 + dir_xt
        records.append({"step": i, "timestep": int(step), "index": int(index), "alpha_t": a_t.flatten()[0].item(),
                        "alpha_prev": a_prev.flatten()[0].item()})
        xs.append(x.clone())
    return x, records, torch.stack(xs)
