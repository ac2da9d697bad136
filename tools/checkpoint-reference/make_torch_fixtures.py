"""
Writes the small torch-made fixtures of test/checkpoint/torch-zip.test.ts and hostile-files.test.ts into
test/fixtures/checkpoints/formats/. The tests only read the committed files; re-run this only to change them:

    /usr/bin/python3 tools/checkpoint-reference/make_torch_fixtures.py    # Debian's python3-torch 1.13

Files:
  sd-like.ckpt           torch.save through a buffer (top folder "archive", as PyTorch Lightning writes), pickle
                         protocol 2, shaped like a CompVis SD checkpoint: epoch/global_step/pytorch-lightning_version,
                         a state_dict OrderedDict (with _metadata, so a BUILD) holding every dtype, views sharing one
                         storage at offsets, a transposed (non-contiguous) view, an nn.Parameter, model_ema.* keys
                         with the dots removed plus model_ema.decay/num_updates, a `__proto__` key and a non-tensor
                         entry; and a `callbacks` dict keyed by a fake pytorch_lightning ModelCheckpoint class.
  protocol4.pt           a bare state dict saved to a file (top folder "protocol4") with pickle protocol 4
                         (FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL).
  wrapped-model.pt       {'model': state_dict, 'epoch': 3}.
  *.expected.json        per tensor: dtype, shape and the hex of its contiguous little-endian bytes.
  evil-posix-system.pt   a state dict whose value __reduce__s to os.system('touch /tmp/fusegraph-evil-marker')
                         (pickled as GLOBAL 'posix system'). Never load it with plain torch.load.
"""
import collections
import io
import json
import os
import sys
import types

import torch

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'test', 'fixtures', 'checkpoints', 'formats')
DTYPES = {
    torch.float32: 'F32', torch.float16: 'F16', torch.bfloat16: 'BF16', torch.float64: 'F64', torch.int64: 'I64',
    torch.int32: 'I32', torch.int16: 'I16', torch.int8: 'I8', torch.uint8: 'U8', torch.bool: 'BOOL',
}


def fake_lightning():
    """A stand-in pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint, pickled by reference as a dict key."""
    names = ['pytorch_lightning', 'pytorch_lightning.callbacks', 'pytorch_lightning.callbacks.model_checkpoint']
    mods = [types.ModuleType(n) for n in names]
    for n, m in zip(names, mods):
        sys.modules[n] = m
    mods[0].callbacks = mods[1]
    mods[1].model_checkpoint = mods[2]

    class ModelCheckpoint:
        pass

    ModelCheckpoint.__module__ = names[2]
    ModelCheckpoint.__qualname__ = 'ModelCheckpoint'
    mods[2].ModelCheckpoint = ModelCheckpoint
    return ModelCheckpoint


def expected(state):
    out = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            c = v.detach().contiguous()
            # numpy has no bfloat16: take its bits as int16
            data = (c.view(torch.int16) if c.dtype == torch.bfloat16 else c).numpy().tobytes()
            out[k] = {'dtype': DTYPES[c.dtype], 'shape': list(c.shape), 'hex': data.hex()}
    return out


def write_json(name, obj):
    with open(os.path.join(OUT, name), 'w') as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write('\n')


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    ModelCheckpoint = fake_lightning()

    lin = torch.nn.Linear(3, 4)
    sd = lin.state_dict()  # OrderedDict with _metadata
    sd['model.diffusion_model.in.weight'] = torch.randn(4, 3)
    sd['model.diffusion_model.h16'] = torch.randn(5).half()
    sd['model.diffusion_model.bf16'] = torch.tensor([1.0, -2.5, 3.140625, 1e30]).bfloat16()
    sd['first_stage_model.f64'] = torch.tensor([3.141592653589793, -1e-300], dtype=torch.float64)
    sd['cond_stage_model.transformer.text_model.embeddings.position_ids'] = torch.arange(7, dtype=torch.int64).unsqueeze(0)
    sd['big_i64'] = torch.tensor([2 ** 40, -(2 ** 33), 0], dtype=torch.int64)
    sd['i32'] = torch.tensor([-5, 7], dtype=torch.int32)
    sd['i16'] = torch.tensor([-300, 300], dtype=torch.int16)
    sd['i8'] = torch.tensor([-128, 127], dtype=torch.int8)
    sd['u8'] = torch.tensor([0, 200, 255], dtype=torch.uint8)
    sd['mask'] = torch.tensor([True, False, True])
    base = torch.arange(30, dtype=torch.float32) / 8
    sd['shared.first'] = base[0:6].view(2, 3)
    sd['shared.second'] = base[6:24].view(3, 6)
    sd['shared.tail'] = base[24:]
    sd['transposed'] = (torch.arange(12, dtype=torch.float32) - 5).view(3, 4).t()
    sd['param'] = torch.nn.Parameter(torch.tensor([0.5, 0.25]))
    sd['model_ema.decay'] = torch.tensor(0.9999)
    sd['model_ema.num_updates'] = torch.tensor(470000, dtype=torch.int32)
    sd['model_ema.diffusion_modelinput_blocks00weight'] = torch.randn(2, 2)
    sd['__proto__'] = torch.tensor([42.0])
    sd['empty'] = torch.zeros(0, 3)
    ckpt = {
        'epoch': 6,
        'global_step': 470000,
        'pytorch-lightning_version': '1.4.2',
        'state_dict': sd,
        'callbacks': {ModelCheckpoint: {'monitor': None, 'best_model_score': None, 'best_model_path': '', 'dirpath': 'logs/checkpoints'}},
        'optimizer_states': [],
        'lr_schedulers': [],
    }
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    with open(os.path.join(OUT, 'sd-like.ckpt'), 'wb') as f:
        f.write(buf.getvalue())
    write_json('sd-like.expected.json', expected(sd))

    p4 = collections.OrderedDict()
    p4['a.weight'] = torch.randn(2, 3)
    p4['a.half'] = torch.randn(3).half()
    p4['a.ids'] = torch.arange(4)
    p4['a.view'] = p4['a.weight'][1]
    torch.save(p4, os.path.join(OUT, 'protocol4.pt'), pickle_protocol=4)
    write_json('protocol4.expected.json', expected(p4))

    wm = {'model': {'w': torch.tensor([1.0, 2.0]), 'step': 3}, 'epoch': 3}
    torch.save(wm, os.path.join(OUT, 'wrapped-model.pt'))

    class Evil:
        def __reduce__(self):
            return (os.system, ('touch /tmp/fusegraph-evil-marker',))

    torch.save({'w': torch.zeros(1), 'evil': Evil()}, os.path.join(OUT, 'evil-posix-system.pt'))
    print('wrote', sorted(os.listdir(OUT)))


if __name__ == '__main__':
    main()
