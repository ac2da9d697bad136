"""Tiny random LoRAs for test/fixtures/checkpoints/tiny-sd1.ckpt and their PyTorch merges (issue #26).

Writes test/fixtures/checkpoints/lora/:
  tiny-sd1-lora-kohya.safetensors  kohya/A1111 keys (F16): UNet attention to_q/to_k/to_v/to_out_0 (diffusers names),
                                   proj_in 1x1 conv (LDM name), GEGLU ff_net_0_proj, a ResBlock 3x3 conv as LoCon
                                   without mid and one with lora_mid, a 1x1 skip_connection (LDM name), text encoder
                                   q_proj / out_proj / mlp_fc1; alpha on some modules, none on others; plus one
                                   module the model does not have and a bundled embedding (unknown keys)
  tiny-sd1-lora-peft.safetensors   PEFT lora_A/lora_B with unet. / text_encoder. prefixes (F32), one diffusers
                                   attention-processor module (`processor.to_k_lora.down`), one lora_linear_layer
  tiny-lora-nan.safetensors        a kohya LoRA with a NaN in one up weight
  tiny-lora-loha.safetensors       a LyCORIS LoHa (hada_w1_a ...)
  reference/*.npy + reference/manifest.json: merged weights (W + s * alpha/rank * up@down, ComfyUI's formula, LoCon
  mid as comfy/weight_adapter/lora.py) and UNet calls of the merged models (ldm_reference.UNetModel, the checkpoint
  manifest's sample / context, t = 999): kohya at strength_model 0.6 / strength_clip 1.0, and kohya 0.6 + PEFT 1.0
  stacked.

Run with Debian's PyTorch: /usr/bin/python3 tools/checkpoint-reference/make_lora_fixtures.py
"""
import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ldm_reference as L  # noqa: E402
import make_fixtures as F  # noqa: E402

torch.set_num_threads(2)
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CKPT_DIR = os.path.join(ROOT, "test", "fixtures", "checkpoints")
OUT = os.path.join(CKPT_DIR, "lora")
REF = os.path.join(OUT, "reference")

STRENGTH_MODEL = 0.6
STRENGTH_CLIP = 1.0

g = torch.Generator().manual_seed(2601)


def randn(*shape, scale=1.0):
    return (torch.randn(*shape, generator=g) * scale).float()


def lora_pair(out_dim, in_shape, rank, up_scale):
    """down [rank, *in_shape] ~ N(0, 1/in), up [out, rank(, 1, 1)] ~ N(0, up_scale): a visible but O(0.1) change."""
    fan_in = int(np.prod(in_shape))
    down = randn(rank, *in_shape, scale=1.0 / np.sqrt(fan_in))
    up_shape = (out_dim, rank) if len(in_shape) == 1 else (out_dim, rank, 1, 1)
    up = randn(*up_shape, scale=up_scale)
    return up, down


def merge(w, up, down, alpha, strength, mid=None):
    """comfy/weight_adapter/lora.py LoRAAdapter.calculate_weight, float32."""
    w = w.float().clone()
    mat1, mat2 = up.float(), down.float()
    a = alpha / mat2.shape[0] if alpha is not None else 1.0
    if mid is not None:
        mat3 = mid.float()
        final_shape = [mat2.shape[1], mat2.shape[0], mat3.shape[2], mat3.shape[3]]
        mat2 = torch.mm(mat2.transpose(0, 1).flatten(start_dim=1), mat3.transpose(0, 1).flatten(start_dim=1)) \
            .reshape(final_shape).transpose(0, 1)
    diff = torch.mm(mat1.flatten(start_dim=1), mat2.flatten(start_dim=1)).reshape(w.shape)
    return w + (strength * a) * diff


def save_npy(name, t):
    a = np.ascontiguousarray(t.detach().to(torch.float32).numpy())
    np.save(os.path.join(REF, name), a, allow_pickle=False)
    return {"file": name, "shape": list(a.shape)}


def main():
    os.makedirs(REF, exist_ok=True)
    F.fake_model_checkpoint_class()
    csd = torch.load(os.path.join(CKPT_DIR, "tiny-sd1.ckpt"), map_location="cpu")["state_dict"]
    unet = OrderedDict((k, v.float()) for k, v in F.sub(csd, F.UNET_PREFIX).items())
    clip = OrderedDict((k, v.float() if v.is_floating_point() else v) for k, v in F.sub(csd, F.CLIP1_PREFIX).items())

    # ---- kohya ------------------------------------------------------------------------------------------------
    # (lora key, canonical weight, component, rank, alpha or None, kind)
    tb0 = "input_blocks.1.1.transformer_blocks.0"
    kohya_spec = [
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", f"{tb0}.attn1.to_q.weight", "unet", 4, 2.0, "linear"),
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k", f"{tb0}.attn1.to_k.weight", "unet", 4, None, "linear"),
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v", f"{tb0}.attn2.to_v.weight", "unet", 3, 6.0, "linear"),
        ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0", f"{tb0}.attn1.to_out.0.weight", "unet", 4, 4.0, "linear"),
        ("lora_unet_input_blocks_4_1_proj_in", "input_blocks.4.1.proj_in.weight", "unet", 4, 3.0, "conv1x1"),
        ("lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj", "middle_block.1.transformer_blocks.0.ff.net.0.proj.weight", "unet", 4, 2.0, "linear"),
        ("lora_unet_down_blocks_1_resnets_0_conv1", "input_blocks.4.0.in_layers.2.weight", "unet", 4, 2.0, "locon"),
        ("lora_unet_up_blocks_0_resnets_1_conv2", "output_blocks.1.0.out_layers.3.weight", "unet", 4, 4.0, "locon-mid"),
        ("lora_unet_output_blocks_8_0_skip_connection", "output_blocks.8.0.skip_connection.weight", "unet", 2, None, "conv1x1"),
        ("lora_te_text_model_encoder_layers_0_self_attn_q_proj", "text_model.encoder.layers.0.self_attn.q_proj.weight", "te", 4, 2.0, "linear"),
        ("lora_te_text_model_encoder_layers_1_self_attn_out_proj", "text_model.encoder.layers.1.self_attn.out_proj.weight", "te", 4, 8.0, "linear"),
        ("lora_te_text_model_encoder_layers_1_mlp_fc1", "text_model.encoder.layers.1.mlp.fc1.weight", "te", 4, None, "linear"),
    ]
    kohya = OrderedDict()
    merged_unet = OrderedDict(unet)
    merged_clip = OrderedDict(clip)
    merged_names = {}
    for key, name, comp, rank, alpha, kind in kohya_spec:
        base = (unet if comp == "unet" else clip)[name]
        out_dim = base.shape[0]
        mid = None
        if kind == "linear":
            up, down = lora_pair(out_dim, base.shape[1:], rank, 0.3)
        elif kind == "conv1x1":
            up, down = lora_pair(out_dim, base.shape[1:], rank, 0.3)
        elif kind == "locon":
            up, down = lora_pair(out_dim, base.shape[1:], rank, 0.3)
        else:  # locon-mid: down 1x1, mid rank x rank x 3 x 3, up 1x1
            up, down = lora_pair(out_dim, (base.shape[1], 1, 1), rank, 0.3)
            mid = randn(rank, rank, base.shape[2], base.shape[3], scale=1.0 / np.sqrt(rank * 9))
        # stored as F16, merged from the stored values
        up, down = up.half(), down.half()
        kohya[f"{key}.lora_up.weight"] = up
        kohya[f"{key}.lora_down.weight"] = down
        if mid is not None:
            mid = mid.half()
            kohya[f"{key}.lora_mid.weight"] = mid
        if alpha is not None:
            kohya[f"{key}.alpha"] = torch.tensor(alpha, dtype=torch.float16)
        target = merged_unet if comp == "unet" else merged_clip
        strength = STRENGTH_MODEL if comp == "unet" else STRENGTH_CLIP
        target[name] = merge(target[name], up, down, alpha, strength, mid)
        merged_names[name] = comp
        F.check(not torch.equal(target[name], base), f"{key} changes {name}")
    # a module the model does not have (level 5) and a bundled textual-inversion embedding: unknown keys
    kohya["lora_unet_down_blocks_5_attentions_0_proj_in.lora_up.weight"] = randn(8, 2).half()
    kohya["lora_unet_down_blocks_5_attentions_0_proj_in.lora_down.weight"] = randn(2, 8).half()
    kohya["bundle_emb.tiny.string_to_param.*"] = randn(1, 64).half()
    F.write_safetensors(os.path.join(OUT, "tiny-sd1-lora-kohya.safetensors"), kohya,
                        {"ss_network_module": "networks.lora", "ss_network_dim": "4"})

    # ---- PEFT / diffusers ---------------------------------------------------------------------------------------
    peft_spec = [
        ("unet.down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_q", "input_blocks.5.1.transformer_blocks.0.attn2.to_q.weight", "unet", 4, "peft"),
        ("unet.up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0", "output_blocks.3.1.transformer_blocks.0.attn1.to_out.0.weight", "unet", 4, "peft"),
        ("unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_k", "middle_block.1.transformer_blocks.0.attn2.to_k.weight", "unet", 2, "attn-procs"),
        # the kohya file changes this one too: the two LoRAs stack
        ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", f"{tb0}.attn1.to_q.weight", "unet", 2, "peft"),
        ("text_encoder.text_model.encoder.layers.0.self_attn.v_proj", "text_model.encoder.layers.0.self_attn.v_proj.weight", "te", 4, "peft"),
        ("text_encoder.text_model.encoder.layers.1.mlp.fc2", "text_model.encoder.layers.1.mlp.fc2.weight", "te", 4, "linear-layer"),
    ]
    peft = OrderedDict()
    stacked_unet = OrderedDict(merged_unet)
    stacked_clip = OrderedDict(merged_clip)
    peft_merged_names = {}
    for key, name, comp, rank, kind in peft_spec:
        base = (unet if comp == "unet" else clip)[name]
        up, down = lora_pair(base.shape[0], base.shape[1:], rank, 0.3)
        if kind == "peft":
            peft[f"{key}.lora_A.weight"], peft[f"{key}.lora_B.weight"] = down, up
        elif kind == "attn-procs":
            peft[f"{key}_lora.down.weight"], peft[f"{key}_lora.up.weight"] = down, up
        else:
            peft[f"{key}.lora_linear_layer.down.weight"], peft[f"{key}.lora_linear_layer.up.weight"] = down, up
        target = stacked_unet if comp == "unet" else stacked_clip
        target[name] = merge(target[name], up, down, None, 1.0)
        peft_merged_names[name] = comp
    F.write_safetensors(os.path.join(OUT, "tiny-sd1-lora-peft.safetensors"), peft)

    # ---- refused files -----------------------------------------------------------------------------------------
    nan = OrderedDict()
    k = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    up, down = lora_pair(32, (32,), 4, 0.3)
    up[3, 1] = float("nan")
    nan[f"{k}.lora_up.weight"], nan[f"{k}.lora_down.weight"], nan[f"{k}.alpha"] = up.half(), down.half(), torch.tensor(4.0)
    F.write_safetensors(os.path.join(OUT, "tiny-lora-nan.safetensors"), nan)
    loha = OrderedDict()
    for part in ("hada_w1_a", "hada_w2_a"):
        loha[f"{k}.{part}"] = randn(32, 4)
    for part in ("hada_w1_b", "hada_w2_b"):
        loha[f"{k}.{part}"] = randn(4, 32)
    loha[f"{k}.alpha"] = torch.tensor(4.0)
    F.write_safetensors(os.path.join(OUT, "tiny-lora-loha.safetensors"), loha)

    # ---- reference merges and UNet calls -------------------------------------------------------------------------
    manifest = {"format": 1, "generator": "tools/checkpoint-reference/make_lora_fixtures.py", "checkpoint": "tiny-sd1.ckpt",
                "strength_model": STRENGTH_MODEL, "strength_clip": STRENGTH_CLIP, "merged": [], "unet": []}
    for name, comp in merged_names.items():
        src = merged_unet if comp == "unet" else merged_clip
        fname = "kohya-" + name.replace(".", "_") + ".npy"
        manifest["merged"].append({"lora": "tiny-sd1-lora-kohya.safetensors", "component": comp, "name": name,
                                   "stack": ["kohya"], **save_npy(fname, src[name])})
    for name, comp in peft_merged_names.items():
        src = stacked_unet if comp == "unet" else stacked_clip
        fname = "stack-" + name.replace(".", "_") + ".npy"
        manifest["merged"].append({"lora": "tiny-sd1-lora-peft.safetensors", "component": comp, "name": name,
                                   "stack": ["kohya", "peft"], **save_npy(fname, src[name])})

    ckref = os.path.join(CKPT_DIR, "reference")
    sample = torch.from_numpy(np.load(os.path.join(ckref, "unet-sample-2x4x8x8.npy")))
    context = torch.from_numpy(np.load(os.path.join(ckref, "unet-context-sd1.npy")))
    t = 999
    base_model = F.as_f32_model(L.UNetModel, F.SD1_UNET, unet)
    with torch.no_grad():
        base_out = base_model(sample, torch.tensor([t, t]), context)
        for tag, sd, stack in [("kohya", merged_unet, ["kohya"]), ("stack", stacked_unet, ["kohya", "peft"])]:
            model = F.as_f32_model(L.UNetModel, F.SD1_UNET, sd)
            out = model(sample, torch.tensor([t, t]), context)
            diff = (out - base_out).abs().max().item()
            F.check(diff > 1e-2, f"{tag}: the LoRA changes the UNet output ({diff:.3g})")
            print(f"  unet {tag}: out std {out.std().item():.3f}, max change from base {diff:.3g}")
            manifest["unet"].append({"name": f"unet-{tag}-t{t}", "stack": stack, "timestep": t,
                                     "sample": {"file": "../../reference/unet-sample-2x4x8x8.npy", "shape": list(sample.shape)},
                                     "context": {"file": "../../reference/unet-context-sd1.npy", "shape": list(context.shape)},
                                     "out": save_npy(f"unet-{tag}-t{t}.npy", out)})
    with open(os.path.join(REF, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = 0
    for d, _, files in os.walk(OUT):
        for n in sorted(files):
            p = os.path.join(d, n)
            total += os.path.getsize(p)
            print(f"  {os.path.relpath(p, ROOT)}  {os.path.getsize(p):,} bytes")
    print(f"  total {total:,} bytes")


if __name__ == "__main__":
    main()
