"""Writes the tiny Stable Diffusion checkpoints and their PyTorch reference outputs to test/fixtures/checkpoints/.

    /usr/bin/python3 tools/checkpoint-reference/make_fixtures.py [OUT_DIR]

Deterministic (seeded). See README.md next to this file for what is written and the manifest format.
"""
import io
import json
import math
import os
import struct
import sys
import types
from collections import OrderedDict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ldm_reference as L  # noqa: E402

torch.set_num_threads(2)
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "test", "fixtures", "checkpoints")
REF = os.path.join(OUT, "reference")

# ---------------------------------------------------------------------------------------------------------------
# tiny architectures

SD1_CLIP = dict(vocab_size=49408, width=64, layers=2, heads=1, max_positions=77)
SD1_UNET = dict(in_channels=4, out_channels=4, model_channels=32, attention_resolutions=(1, 2), num_res_blocks=2,
                channel_mult=(1, 2, 2), num_heads=8, num_head_channels=-1, transformer_depth=1, context_dim=64,
                use_linear_in_transformer=False)
VAE = dict(embed_dim=4, ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), z_channels=4, double_z=True,
           in_channels=3, out_ch=3, resolution=16)
SD2_CLIP = dict(vocab_size=49408, width=64, layers=3, heads=1, context_length=77, embed_dim=64)
SD2_UNET = dict(in_channels=4, out_channels=4, model_channels=64, attention_resolutions=(1, 2), num_res_blocks=1,
                channel_mult=(1, 2), num_heads=-1, num_head_channels=64, transformer_depth=1, context_dim=64,
                use_linear_in_transformer=True)
MH_CLIP = dict(vocab_size=1000, width=128, layers=2, heads=2, max_positions=77)

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP1_PREFIX = "cond_stage_model.transformer."
CLIP2_PREFIX = "cond_stage_model.model."

# ---------------------------------------------------------------------------------------------------------------
# random init that keeps activations O(1) (no zero-init of out layers, unlike LDM)


@torch.no_grad()
def init_module(module, seed):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    for m in module.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            fan_in = m.weight[0].numel()
            m.weight.copy_(randn(*m.weight.shape) / math.sqrt(fan_in))
            if m.bias is not None:
                m.bias.copy_(0.05 * randn(*m.bias.shape))
        elif isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
            m.weight.copy_(1 + 0.1 * randn(*m.weight.shape))
            m.bias.copy_(0.1 * randn(*m.bias.shape))
        elif isinstance(m, torch.nn.Embedding):
            m.weight.copy_(0.5 * randn(*m.weight.shape))
        elif isinstance(m, L.OpenCLIPMultiheadAttention):
            m.in_proj_weight.copy_(randn(*m.in_proj_weight.shape) / math.sqrt(m.in_proj_weight.shape[1]))
            m.in_proj_bias.copy_(0.05 * randn(*m.in_proj_bias.shape))
        elif isinstance(m, L.OpenCLIPTextTower):
            m.positional_embedding.copy_(0.5 * randn(*m.positional_embedding.shape))
            m.text_projection.copy_(randn(*m.text_projection.shape) / math.sqrt(m.text_projection.shape[0]))
    return module


@torch.no_grad()
def calibrate_unet_out(unet, context_dim, seed):
    """Rescale out.2 so that eps-predictions have about unit std (random nets would otherwise be far off)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, 8, generator=g)
    ctx = torch.randn(2, 77, context_dim, generator=g)
    s = unet(x, torch.tensor([500, 500]), ctx).std().item()
    unet.out[2].weight.div_(s)
    unet.out[2].bias.div_(s)


# ---------------------------------------------------------------------------------------------------------------
# safetensors writer/reader (8-byte LE header length, JSON header padded with spaces to a multiple of 8)

ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64", torch.int32: "I32"}
ST_TORCH = {v: k for k, v in ST_DTYPES.items()}


def write_safetensors(path, tensors, metadata=None):
    header, offset, blobs = OrderedDict(), 0, []
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        data = t.numpy().tobytes() if t.dtype != torch.float16 else t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = OrderedDict()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        dt = ST_TORCH[info["dtype"]]
        buf = bytearray(raw[base + a : base + b])
        if dt == torch.float16:
            t = torch.frombuffer(buf, dtype=torch.int16).view(torch.float16)
        else:
            t = torch.frombuffer(buf, dtype=dt)
        out[name] = t.reshape(info["shape"]).clone()
    return out, header.get("__metadata__")


# ---------------------------------------------------------------------------------------------------------------
# Lightning-style .ckpt


def fake_model_checkpoint_class():
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    for n in names:
        if n not in sys.modules:
            sys.modules[n] = types.ModuleType(n)
    mod = sys.modules[names[-1]]
    if not hasattr(mod, "ModelCheckpoint"):
        cls = type("ModelCheckpoint", (), {})
        cls.__module__ = names[-1]
        mod.ModelCheckpoint = cls
    return mod.ModelCheckpoint


def write_lightning_ckpt(path, sd):
    ModelCheckpoint = fake_model_checkpoint_class()
    obj = {
        "epoch": 0,
        "global_step": 470000,
        "pytorch-lightning_version": "1.4.2",
        "state_dict": sd,
        "callbacks": {ModelCheckpoint: {"monitor": None, "best_model_score": None, "best_model_path": "",
                                        "current_score": None, "dirpath": "/fsx/stable-diffusion/logs/checkpoints"}},
    }
    buf = io.BytesIO()  # saving to a stream names the zip folder "archive/", as Lightning's files have
    torch.save(obj, buf)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def ema_key(unet_key):
    """LitEma: 'model_ema.' + name of the DiffusionWrapper parameter with the dots removed."""
    return "model_ema." + ("diffusion_model." + unet_key).replace(".", "")


def prefixed(prefix, sd):
    return OrderedDict((prefix + k, v.detach().clone().contiguous()) for k, v in sd.items())


def sub(sd, prefix):
    return OrderedDict((k[len(prefix):], v) for k, v in sd.items() if k.startswith(prefix))


def as_f32_model(cls, kwargs, sd):
    m = cls(**kwargs)
    conv = OrderedDict((k, v.float() if v.is_floating_point() else v) for k, v in sd.items())
    m.load_state_dict(conv, strict=True)
    return m.eval()


# ---------------------------------------------------------------------------------------------------------------
# reference output bookkeeping

MANIFEST = {"format": 1, "generator": "tools/checkpoint-reference/make_fixtures.py", "models": {}, "cases": []}


def save_npy(name, t):
    a = np.ascontiguousarray(t.detach().to(torch.float32).numpy())
    np.save(os.path.join(REF, name), a, allow_pickle=False)
    return {"file": name, "shape": list(a.shape)}


def pad(ids, to, value):
    return ids + [value] * (to - len(ids))


def check(cond, msg):
    if not cond:
        raise SystemExit("CHECK FAILED: " + msg)
    print("  ok:", msg)


def maxdiff(a, b):
    return (a - b).abs().max().item()


# ---------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def self_checks():
    print("self-checks")
    # 1x1-conv proj_in equals a Linear with the reshaped weight, on the (h w) c layout
    st = init_module(L.SpatialTransformer(64, 8, 8, context_dim=64, use_linear=False), 1).eval()
    lin = init_module(L.SpatialTransformer(64, 8, 8, context_dim=64, use_linear=True), 2).eval()
    sd = st.state_dict()
    sd = OrderedDict((k, v[:, :, 0, 0] if k.startswith(("proj_in.weight", "proj_out.weight")) else v) for k, v in sd.items())
    lin.load_state_dict(sd)
    x, c = torch.randn(2, 64, 6, 10), torch.randn(2, 7, 64)
    check(maxdiff(st(x, c), lin(x, c)) < 1e-5, "conv proj_in/out == linear proj_in/out with [C,C,1,1]->[C,C] weights")
    # CrossAttention against torch.nn.MultiheadAttention (no in-proj bias, separate k/v dims)
    ca = init_module(L.CrossAttention(64, 32, heads=4, dim_head=16), 3).eval()
    mha = torch.nn.MultiheadAttention(64, 4, bias=False, kdim=32, vdim=32, batch_first=True)
    mha.q_proj_weight.copy_(ca.to_q.weight)
    mha.k_proj_weight.copy_(ca.to_k.weight)
    mha.v_proj_weight.copy_(ca.to_v.weight)
    mha.out_proj.weight.copy_(ca.to_out[0].weight)
    ca.to_out[0].bias.zero_()  # bias=False drops the out_proj bias too
    q, kv = torch.randn(2, 9, 64), torch.randn(2, 5, 32)
    check(maxdiff(ca(q, kv), mha(q, kv, kv, need_weights=False)[0]) < 1e-5, "CrossAttention == nn.MultiheadAttention")
    # OpenCLIP attention against nn.MultiheadAttention with a causal mask
    oa = init_module(L.OpenCLIPMultiheadAttention(64, 2), 4).eval()
    mha = torch.nn.MultiheadAttention(64, 2, batch_first=True)
    mha.in_proj_weight.copy_(oa.in_proj_weight)
    mha.in_proj_bias.copy_(oa.in_proj_bias)
    mha.out_proj.load_state_dict(oa.out_proj.state_dict())
    x = torch.randn(2, 11, 64)
    m = L.causal_mask(11)
    check(maxdiff(oa(x, m), mha(x, x, x, attn_mask=m, need_weights=False)[0]) < 1e-5,
          "OpenCLIP fused in_proj attention == nn.MultiheadAttention (causal)")
    # causal mask: later tokens do not change earlier positions
    clip = init_module(L.CLIPTextModel(vocab_size=100, width=64, layers=2, heads=2), 5).eval()
    a = torch.tensor([[1, 2, 3, 4, 5, 6, 7]])
    b = torch.tensor([[1, 2, 3, 9, 9, 9, 9]])
    ha, hb = clip(a)[0], clip(b)[0]
    check(maxdiff(ha[:, :3], hb[:, :3]) == 0 and maxdiff(ha[:, 3:], hb[:, 3:]) > 1e-3, "CLIP causal mask")
    # timestep embedding: cos first, then sin
    e = L.timestep_embedding(torch.tensor([3.0]), 8)
    check(abs(e[0, 0].item() - math.cos(3.0)) < 1e-6 and abs(e[0, 4].item() - math.sin(3.0)) < 1e-6,
          "timestep_embedding [cos|sin] with freqs[0] = 1")
    # VAE downsample pads right/bottom only
    d = L.VaeDownsample(32)
    check(list(d(torch.randn(1, 32, 16, 16)).shape) == [1, 32, 8, 8], "VAE downsample asymmetric pad halves 16 -> 8")


def describe_unet(cfg):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


@torch.no_grad()
def main():
    os.makedirs(REF, exist_ok=True)
    self_checks()

    # ---- build the models ------------------------------------------------------------------------------------
    clip1 = init_module(L.CLIPTextModel(**SD1_CLIP), 101).eval()
    unet1 = init_module(L.UNetModel(**SD1_UNET), 102).eval()
    calibrate_unet_out(unet1, 64, 902)
    unet1_ema = init_module(L.UNetModel(**SD1_UNET), 103).eval()
    calibrate_unet_out(unet1_ema, 64, 903)
    vae1 = init_module(L.AutoencoderKL(**VAE), 104).eval()
    clip2 = init_module(L.OpenCLIPTextTower(**SD2_CLIP), 201).eval()
    unet2 = init_module(L.UNetModel(**SD2_UNET), 202).eval()
    calibrate_unet_out(unet2, 64, 904)
    vae2 = init_module(L.AutoencoderKL(**VAE), 204).eval()
    vae_alone = init_module(L.AutoencoderKL(**VAE), 304).eval()
    clip_mh = init_module(L.CLIPTextModel(**MH_CLIP), 401).eval()
    sched = L.ldm_schedule_buffers()

    # ---- 1. tiny-sd1.ckpt --------------------------------------------------------------------------------------
    sd = OrderedDict()
    sd.update(sched)
    unet_sd = unet1.state_dict()
    sd.update(prefixed(UNET_PREFIX, unet_sd))
    sd.update(prefixed(VAE_PREFIX, vae1.state_dict()))
    clip_sd = prefixed(CLIP1_PREFIX, clip1.state_dict())
    tok = CLIP1_PREFIX + "text_model.embeddings.token_embedding.weight"
    clip_sd[tok] = clip_sd[tok].half()  # HalfStorage in an otherwise float32 file
    sd.update(clip_sd)
    sd["model_ema.decay"] = torch.tensor(0.9999, dtype=torch.float32)
    sd["model_ema.num_updates"] = torch.tensor(0, dtype=torch.int32)
    ema_sd = unet1_ema.state_dict()
    for k in unet_sd:
        sd[ema_key(k)] = ema_sd[k].detach().clone()
    p_ckpt = os.path.join(OUT, "tiny-sd1.ckpt")
    write_lightning_ckpt(p_ckpt, sd)

    # ---- 2. tiny-sd1-fp16.safetensors ---------------------------------------------------------------------------
    non_ema = OrderedDict((k, v) for k, v in sd.items() if not k.startswith("model_ema."))
    fp16 = OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in non_ema.items())
    p_fp16 = os.path.join(OUT, "tiny-sd1-fp16.safetensors")
    write_safetensors(p_fp16, fp16, {"format": "pt"})

    # ---- 3. tiny-sd2.safetensors ----------------------------------------------------------------------------------
    sd2 = OrderedDict()
    sd2.update(sched)
    sd2.update(prefixed(UNET_PREFIX, unet2.state_dict()))
    sd2.update(prefixed(VAE_PREFIX, vae2.state_dict()))
    sd2.update(prefixed(CLIP2_PREFIX, clip2.state_dict()))
    sd2 = OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in sd2.items())
    p_sd2 = os.path.join(OUT, "tiny-sd2.safetensors")
    write_safetensors(p_sd2, sd2, None)  # no __metadata__: the loader decides eps/v

    # ---- 4. tiny-vae.safetensors ------------------------------------------------------------------------------
    p_vae = os.path.join(OUT, "tiny-vae.safetensors")
    write_safetensors(p_vae, prefixed("", vae_alone.state_dict()), {"format": "pt"})

    # ---- 5. tiny-clip-multihead.safetensors -----------------------------------------------------------------------
    p_mh = os.path.join(OUT, "tiny-clip-multihead.safetensors")
    write_safetensors(p_mh, prefixed(CLIP1_PREFIX, clip_mh.state_dict()), {"format": "pt"})

    # ---- read everything back (what a loader sees) and check it ---------------------------------------------------
    print("read-back checks")
    ck = torch.load(p_ckpt, map_location="cpu")
    check(set(ck.keys()) == {"epoch", "global_step", "pytorch-lightning_version", "state_dict", "callbacks"},
          "ckpt top-level keys")
    check(type(next(iter(ck["callbacks"]))).__name__ == "type", "callbacks dict keyed by the ModelCheckpoint class")
    with open(p_ckpt, "rb") as f:
        head = f.read(64)
    check(head[:4] == b"PK\x03\x04" and b"archive/" in head, "ckpt is a zip with the archive/ folder")
    csd = ck["state_dict"]
    check(csd[tok].dtype == torch.float16 and csd[CLIP1_PREFIX + "text_model.embeddings.position_ids"].dtype == torch.int64,
          "ckpt: token embedding float16, position_ids int64")
    check(ema_key("input_blocks.0.0.weight") == "model_ema.diffusion_modelinput_blocks00weight"
          and ema_key("input_blocks.0.0.weight") in csd, "ckpt: LitEma flat keys")
    st16, meta16 = read_safetensors(p_fp16)
    st2, meta2 = read_safetensors(p_sd2)
    stv, _ = read_safetensors(p_vae)
    stm, _ = read_safetensors(p_mh)
    check(meta2 is None and meta16 == {"format": "pt"}, "safetensors metadata")
    check(all(torch.equal(st16[k], fp16[k]) for k in fp16) and len(st16) == len(fp16), "fp16 safetensors round trip")
    check(all(torch.equal(st2[k], sd2[k]) for k in sd2), "sd2 safetensors round trip")
    check(unet1.state_dict()["input_blocks.1.1.proj_in.weight"].dim() == 4
          and unet2.state_dict()["input_blocks.1.1.proj_in.weight"].dim() == 2, "SD-1 conv proj_in, SD-2 linear proj_in")

    # models as a loader would build them, in float32
    m = {}
    m["sd1_clip"] = as_f32_model(L.CLIPTextModel, SD1_CLIP, sub(csd, CLIP1_PREFIX))
    m["sd1_unet"] = as_f32_model(L.UNetModel, SD1_UNET, sub(csd, UNET_PREFIX))
    m["sd1_unet_ema"] = as_f32_model(L.UNetModel, SD1_UNET,
                                      OrderedDict((k, csd[ema_key(k)]) for k in unet_sd))
    m["sd1_vae"] = as_f32_model(L.AutoencoderKL, VAE, sub(csd, VAE_PREFIX))
    m["fp16_clip"] = as_f32_model(L.CLIPTextModel, SD1_CLIP, sub(st16, CLIP1_PREFIX))
    m["fp16_unet"] = as_f32_model(L.UNetModel, SD1_UNET, sub(st16, UNET_PREFIX))
    m["sd2_clip"] = as_f32_model(L.OpenCLIPTextTower, SD2_CLIP, sub(st2, CLIP2_PREFIX))
    m["sd2_unet"] = as_f32_model(L.UNetModel, SD2_UNET, sub(st2, UNET_PREFIX))
    m["sd2_vae"] = as_f32_model(L.AutoencoderKL, VAE, sub(st2, VAE_PREFIX))
    m["vae"] = as_f32_model(L.AutoencoderKL, VAE, stv)
    m["mh_clip"] = as_f32_model(L.CLIPTextModel, MH_CLIP, sub(stm, CLIP1_PREFIX))
    acp = csd["alphas_cumprod"]

    MANIFEST["models"] = {
        "tiny-sd1.ckpt": {"kind": "sd1", "container": "lightning-ckpt", "clip": dict(SD1_CLIP, kind="hf-clip-text",
                          activation="quick_gelu", prefix=CLIP1_PREFIX), "unet": describe_unet(SD1_UNET),
                          "vae": describe_unet(VAE), "ema": True,
                          "dtypes": "float32, except the CLIP token embedding (float16), position_ids (int64), "
                                    "model_ema.num_updates (int32, 0-dim); model_ema.decay is a 0-dim float32"},
        "tiny-sd1-fp16.safetensors": {"kind": "sd1", "same_as": "tiny-sd1.ckpt without model_ema.*, floats cast to F16",
                                      "metadata": {"format": "pt"}},
        "tiny-sd2.safetensors": {"kind": "sd2", "clip": dict(SD2_CLIP, kind="openclip-text", activation="gelu",
                                 prefix=CLIP2_PREFIX), "unet": describe_unet(SD2_UNET), "vae": describe_unet(VAE),
                                 "dtypes": "F16 (position_ids none; no __metadata__)"},
        "tiny-vae.safetensors": {"kind": "vae", "vae": describe_unet(VAE), "dtypes": "F32", "prefix": ""},
        "tiny-clip-multihead.safetensors": {"kind": "sd1-clip", "clip": dict(MH_CLIP, kind="hf-clip-text",
                                            activation="quick_gelu", prefix=CLIP1_PREFIX), "dtypes": "F32"},
    }

    print("reference outputs")
    cases = MANIFEST["cases"]
    ids_a = [49406, 320, 736, 2368, 525, 518, 1823, 49407]
    ids_b = [49406, 49407]
    rows1 = [pad(ids_a, 77, 49407), pad(ids_b, 77, 49407)]
    rows2 = [pad(ids_a, 77, 0), pad(ids_b, 77, 0)]
    ids_mh = [[0, 5, 17, 999, 3], [0, 7, 998, 3]]
    rows_mh = [pad(r, 77, 2) for r in ids_mh]

    text = {}
    for tag, file, key, rows in [("sd1", "tiny-sd1.ckpt", "sd1_clip", rows1),
                                 ("sd1-fp16", "tiny-sd1-fp16.safetensors", "fp16_clip", rows1),
                                 ("clip-multihead", "tiny-clip-multihead.safetensors", "mh_clip", rows_mh)]:
        ids = torch.tensor(rows)
        last = m[key].clip_skip(ids, 1)
        skip2 = m[key].clip_skip(ids, 2)
        text[tag] = last
        cases.append({"name": f"{tag}-text", "kind": "clip-text", "checkpoint": file, "inputs": {"input_ids": rows},
                      "settings": {"pad_token_id": rows[0][-1], "max_length": 77},
                      "outputs": {"last_hidden_state": save_npy(f"{tag}-text-last.npy", last),
                                  "clip_skip_2": save_npy(f"{tag}-text-skip2.npy", skip2)},
                      "notes": "last_hidden_state = final_layer_norm(last layer); clip_skip_2 = "
                               "final_layer_norm(hidden state of the second-to-last layer)"})
    ids2 = torch.tensor(rows2)
    pen = m["sd2_clip"].encode(ids2, "penultimate")
    lastl = m["sd2_clip"].encode(ids2, "last")
    text["sd2"] = pen
    cases.append({"name": "sd2-text", "kind": "openclip-text", "checkpoint": "tiny-sd2.safetensors",
                  "inputs": {"input_ids": rows2}, "settings": {"pad_token_id": 0, "max_length": 77},
                  "outputs": {"penultimate": save_npy("sd2-text-penultimate.npy", pen),
                              "last": save_npy("sd2-text-last.npy", lastl)},
                  "notes": "penultimate = ln_final(output of resblocks[-2]) (what SD-2 conditions on, "
                           "FrozenOpenCLIPEmbedder layer='penultimate'); last = ln_final(output of the last resblock)"})
    check(maxdiff(text["sd1"], text["sd1-fp16"]) > 0, "fp16 text output differs from the ckpt's (rounded weights)")

    # ---- UNet ------------------------------------------------------------------------------------------------
    g = torch.Generator().manual_seed(1234)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    sample_file = save_npy("unet-sample-2x4x8x8.npy", sample)
    ctx_files = {tag: save_npy(f"unet-context-{tag}.npy", text[tag]) for tag in ("sd1", "sd1-fp16", "sd2")}
    outs = {}
    for tag, file, key, weights, ctx_tag in [("sd1", "tiny-sd1.ckpt", "sd1_unet", "non-ema", "sd1"),
                                             ("sd1-ema", "tiny-sd1.ckpt", "sd1_unet_ema", "ema", "sd1"),
                                             ("sd1-fp16", "tiny-sd1-fp16.safetensors", "fp16_unet", "non-ema", "sd1-fp16"),
                                             ("sd2", "tiny-sd2.safetensors", "sd2_unet", "non-ema", "sd2")]:
        for t in (999, 500):
            out = m[key](sample, torch.tensor([t, t]), text[ctx_tag])
            outs[(tag, t)] = out
            cases.append({"name": f"{tag}-unet-t{t}", "kind": "unet", "checkpoint": file, "weights": weights,
                          "inputs": {"sample": sample_file, "timestep": t, "context": ctx_files[ctx_tag]},
                          "outputs": {"out": save_npy(f"{tag}-unet-t{t}.npy", out)},
                          "notes": "timestep is one scalar for the whole batch; context row i goes with sample row i"})
            print(f"  {tag} t={t}: out std {out.std().item():.3f}")
    check(maxdiff(outs[("sd1", 999)], outs[("sd1-ema", 999)]) > 0.1, "EMA and non-EMA UNet outputs differ")
    # non-square latent (8x12: LDM needs H, W divisible by 2^(levels-1) = 4)
    sample_ns = torch.randn(2, 4, 8, 12, generator=g)
    out = m["sd1_unet"](sample_ns, torch.tensor([500, 500]), text["sd1"])
    cases.append({"name": "sd1-unet-nonsquare-8x12-t500", "kind": "unet", "checkpoint": "tiny-sd1.ckpt",
                  "weights": "non-ema",
                  "inputs": {"sample": save_npy("unet-sample-2x4x8x12.npy", sample_ns), "timestep": 500,
                             "context": ctx_files["sd1"]},
                  "outputs": {"out": save_npy("sd1-unet-nonsquare-8x12-t500.npy", out)},
                  "notes": "H=8, W=12 (NCHW); 6x10 is impossible for a 3-level UNet (6 -> 3 -> 2 -> 4 != 3)"})
    # 154-token context: two 77-token chunks concatenated along the sequence
    ctx154 = torch.cat([text["sd1"], text["sd1"].flip(0)], dim=1)
    out = m["sd1_unet"](sample, torch.tensor([999, 999]), ctx154)
    cases.append({"name": "sd1-unet-context154-t999", "kind": "unet", "checkpoint": "tiny-sd1.ckpt",
                  "weights": "non-ema",
                  "inputs": {"sample": sample_file, "timestep": 999,
                             "context": save_npy("unet-context-sd1-154.npy", ctx154)},
                  "outputs": {"out": save_npy("sd1-unet-context154-t999.npy", out)},
                  "notes": "context row 0 = [text row 0 | text row 1], row 1 = [text row 1 | text row 0] "
                           "(sd1-text last_hidden_state)"})

    # ---- VAE ---------------------------------------------------------------------------------------------------
    z = torch.randn(1, 4, 8, 8, generator=g)
    z_file = save_npy("vae-latent-1x4x8x8.npy", z)
    for tag, file, key in [("sd1", "tiny-sd1.ckpt", "sd1_vae"), ("sd2", "tiny-sd2.safetensors", "sd2_vae"),
                           ("tiny-vae", "tiny-vae.safetensors", "vae")]:
        img = m[key].decode(z)
        cases.append({"name": f"{tag}-vae-decode", "kind": "vae-decode", "checkpoint": file,
                      "inputs": {"latent": z_file}, "outputs": {"image": save_npy(f"{tag}-vae-decode.npy", img)},
                      "notes": "decoder(post_quant_conv(latent)); no 1/0.18215 scaling, no clamp"})
    x = torch.randn(1, 3, 16, 16, generator=g)
    mean = m["sd1_vae"].encode_mean(x)
    cases.append({"name": "sd1-vae-encode", "kind": "vae-encode", "checkpoint": "tiny-sd1.ckpt",
                  "inputs": {"image": save_npy("vae-image-1x3x16x16.npy", x)},
                  "outputs": {"mean": save_npy("sd1-vae-encode-mean.npy", mean)},
                  "notes": "posterior mean = quant_conv(encoder(image))[:, :4]; no 0.18215 scaling"})

    # ---- DDIM ----------------------------------------------------------------------------------------------------
    x_T = torch.randn(1, 4, 8, 8, generator=g)
    cond, uncond = text["sd1"][0:1], text["sd1"][1:2]
    x0, records, xs = L.ddim_sample(m["sd1_unet"], cond, uncond, x_T, steps=10, guidance=7.5, alphas_cumprod=acp)
    img = m["sd1_vae"].decode(x0 / 0.18215)
    cases.append({"name": "sd1-ddim-10", "kind": "ddim", "checkpoint": "tiny-sd1.ckpt", "weights": "non-ema",
                  "inputs": {"x_T": save_npy("ddim-x_T.npy", x_T), "cond_input_ids": [rows1[0]],
                             "uncond_input_ids": [rows1[1]], "cond": save_npy("ddim-cond.npy", cond),
                             "uncond": save_npy("ddim-uncond.npy", uncond)},
                  "settings": {"steps": 10, "guidance_scale": 7.5, "eta": 0, "schedule": "ldm linear: "
                               "linspace(sqrt(0.00085), sqrt(0.012), 1000, float64)**2, alphas_cumprod float32",
                               "timesteps": [r["timestep"] for r in records], "per_step": records,
                               "cfg": "uncond + g*(cond - uncond), UNet batch [uncond, cond]",
                               "vae_scale": 0.18215},
                  "outputs": {"x_0": save_npy("ddim-x_0.npy", x0), "per_step_x": save_npy("ddim-per-step-x.npy", xs),
                              "image": save_npy("ddim-image.npy", img)},
                  "notes": "per_step_x[i] = x after step i; image = decoder(post_quant_conv(x_0 / 0.18215)), no clamp"})
    print("  ddim timesteps", [r["timestep"] for r in records], "x0 std %.3f" % x0.std().item(),
          "image std %.3f" % img.std().item())

    with open(os.path.join(REF, "manifest.json"), "w") as f:
        json.dump(MANIFEST, f, indent=1)
        f.write("\n")

    print("files")
    for d in (OUT, REF):
        for n in sorted(os.listdir(d)):
            p = os.path.join(d, n)
            if os.path.isfile(p):
                print(f"  {os.path.relpath(p, ROOT)}  {os.path.getsize(p):,} bytes")


if __name__ == "__main__":
    main()
