#!/usr/bin/python3
"""Writes fixtures/attention.safetensors: inputs, parameters, outputs and gradients of PyTorch's
nn.MultiheadAttention and nn.TransformerEncoderLayer, for the C++ attention tests.

Run with Debian's python3-torch (apt install python3-torch):  /usr/bin/python3 make_attention_fixtures.py
The tests only read the generated file, so they never need torch. Values are float64.

Every module is float64, dropout=0.0, in train() mode (so torch 1.13 takes the reference path, never
the inference "fast path"), and every parameter is overwritten after construction with randn * 0.5
(LayerNorm weights: 1 + 0.3 * randn) so that no gradient is trivially zero. Each case "<case>" stores:
  <case>.<param>          the module's parameters under PyTorch's named_parameters() names
  <case>.output           the module's output (for MultiheadAttention: the attention output only,
                          need_weights=False)
  <case>.w_out            random weights of the loss = sum(output * w_out)
  <case>.loss             that loss, shape []
  <case>.grad.<name>      gradient of the loss w.r.t. each input and each parameter
  <case>.causal           shape [1]: 1.0 when the case uses the causal float mask (0 on and below the
                          diagonal, -inf above it, i.e. position i attends to keys j <= i), else 0.0
  <case>.key_padding_mask where used: float 0/1, shape [N, S], 1 = key ignored (PyTorch's True)

Cases (batch_first, E = 8 features, H = 2 heads of D = 4):
  mha_causal    nn.MultiheadAttention(8, 2); self-attention with query = key = value = x [2, 5, 8],
                causal attn_mask [5, 5]. Inputs: x. Params: in_proj_weight [24, 8] (rows 0:8 = W_q,
                8:16 = W_k, 16:24 = W_v), in_proj_bias [24], out_proj.weight [8, 8], out_proj.bias [8].
                The output is also recomputed by hand below (check_mha_by_hand) to document the math:
                q = x W_q^T + b_q (same for k, v); heads: reshape [N, L, H, D] -> transpose to
                [N, H, L, D]; softmax(q k^T / sqrt(D) + mask) v; back to [N, L, E]; out_proj.
  mha_padding   nn.MultiheadAttention(8, 2); cross-attention, query [2, 3, 8], key [2, 4, 8],
                value [2, 4, 8] (independent tensors), key_padding_mask [2, 4]: example 0 masks
                nothing, example 1 masks its last 2 keys. No attn_mask. Inputs: query, key, value.
  enc_post_relu nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, activation="relu",
                norm_first=False, layer_norm_eps=1e-5); src [2, 5, 8]; src_key_padding_mask [2, 5]:
                example 1 masks its last key; no src_mask. Inputs: src. Params: self_attn.in_proj_weight,
                self_attn.in_proj_bias, self_attn.out_proj.weight, self_attn.out_proj.bias,
                linear1.weight [16, 8], linear1.bias [16], linear2.weight [8, 16], linear2.bias [8],
                norm1.weight, norm1.bias, norm2.weight, norm2.bias [8].
  enc_pre_gelu  the same layer with activation="gelu" (exact erf GELU), norm_first=True, the causal
                float src_mask [5, 5] and no key padding mask. Inputs: src.
"""
import json
import math
import os
import struct

import torch

from fixture_writer import FixtureWriter

torch.manual_seed(2025)
torch.set_default_dtype(torch.float64)
writer = FixtureWriter("make_attention_fixtures.py")
emit = writer.emit
tensors = writer.tensors


def read_safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        size = 8 + n + max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    assert os.path.getsize(path) == size, "file size does not match the header"
    return header


def randomize(module):
    """Fresh random parameters everywhere: LayerNorm weights near 1, everything else randn * 0.5."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            is_norm_weight = name.split(".")[0].startswith("norm") and name.endswith("weight")
            p.copy_(1 + 0.3 * torch.randn(p.shape) if is_norm_weight else 0.5 * torch.randn(p.shape))
    module.train()
    return module


def causal_mask(L):
    return torch.triu(torch.full((L, L), float("-inf")), diagonal=1)


def finish(case, module, out, inputs, causal):
    """Stores output, w_out, loss, parameters and gradients; `inputs` maps names to leaf tensors."""
    assert out.requires_grad and out.grad_fn is not None, f"{case}: output is not differentiable"
    for name, p in module.named_parameters():
        emit(f"{case}.{name}", p)
    for name, t in inputs.items():
        emit(f"{case}.{name}", t)
    emit(f"{case}.output", out)
    w_out = torch.randn(out.shape)
    emit(f"{case}.w_out", w_out)
    loss = (out * w_out).sum()
    emit(f"{case}.loss", loss)
    emit(f"{case}.causal", torch.tensor([1.0 if causal else 0.0]))
    loss.backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, f"{case}: zero gradient for {name}"
        emit(f"{case}.grad.{name}", p.grad)
    for name, t in inputs.items():
        assert t.grad is not None and t.grad.abs().max() > 0, f"{case}: zero gradient for {name}"
        emit(f"{case}.grad.{name}", t.grad)


def check_mha_by_hand(mha, x, mask, out):
    """Recomputes self-attention output by hand; documents the exact math of nn.MultiheadAttention."""
    with torch.no_grad():
        N, L, E = x.shape
        H = mha.num_heads
        D = E // H
        W, b = mha.in_proj_weight, mha.in_proj_bias
        q = x @ W[0:E].T + b[0:E]
        k = x @ W[E:2 * E].T + b[E:2 * E]
        v = x @ W[2 * E:].T + b[2 * E:]
        # head split: [N, L, E] -> [N, L, H, D] -> [N, H, L, D]
        q, k, v = (t.reshape(N, L, H, D).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(D) + mask
        ctx = torch.softmax(scores, dim=-1) @ v  # [N, H, L, D]
        ctx = ctx.transpose(1, 2).reshape(N, L, E)
        ref = ctx @ mha.out_proj.weight.T + mha.out_proj.bias
        err = (ref - out).abs().max().item()
        assert err < 1e-12, f"hand-computed MHA differs from PyTorch by {err}"


E, H = 8, 2

# 1. Causal self-attention.
mha = randomize(torch.nn.MultiheadAttention(E, H, dropout=0.0, batch_first=True))
x = torch.randn(2, 5, E, requires_grad=True)
mask = causal_mask(5)
out, _ = mha(x, x, x, attn_mask=mask, need_weights=False)
check_mha_by_hand(mha, x, mask, out)
finish("mha_causal", mha, out, {"x": x}, causal=True)

# 2. Cross-attention with a key padding mask.
mha = randomize(torch.nn.MultiheadAttention(E, H, dropout=0.0, batch_first=True))
query = torch.randn(2, 3, E, requires_grad=True)
key = torch.randn(2, 4, E, requires_grad=True)
value = torch.randn(2, 4, E, requires_grad=True)
kpm = torch.tensor([[False, False, False, False], [False, False, True, True]])
emit("mha_padding.key_padding_mask", kpm)
out, _ = mha(query, key, value, key_padding_mask=kpm, need_weights=False)
finish("mha_padding", mha, out, {"query": query, "key": key, "value": value}, causal=False)

# 3. Post-norm ReLU encoder layer with a key padding mask.
enc = randomize(torch.nn.TransformerEncoderLayer(d_model=E, nhead=H, dim_feedforward=16, dropout=0.0, activation="relu",
                                                 batch_first=True, norm_first=False, layer_norm_eps=1e-5))
src = torch.randn(2, 5, E, requires_grad=True)
kpm = torch.tensor([[False] * 5, [False] * 4 + [True]])
emit("enc_post_relu.key_padding_mask", kpm)
out = enc(src, src_key_padding_mask=kpm)
finish("enc_post_relu", enc, out, {"src": src}, causal=False)

# 4. Pre-norm GELU encoder layer with the causal mask.
enc = randomize(torch.nn.TransformerEncoderLayer(d_model=E, nhead=H, dim_feedforward=16, dropout=0.0, activation="gelu",
                                                 batch_first=True, norm_first=True, layer_norm_eps=1e-5))
src = torch.randn(2, 5, E, requires_grad=True)
out = enc(src, src_mask=causal_mask(5))
finish("enc_pre_gelu", enc, out, {"src": src}, causal=True)

here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(os.path.join(here, "fixtures"), exist_ok=True)
path = os.path.join(here, "fixtures", "attention.safetensors")
writer.write(path)

header = read_safetensors_header(path)
assert sorted(k for k in header if k != "__metadata__") == sorted(tensors)
for name in sorted(tensors):
    assert header[name]["shape"] == list(tensors[name].shape) and header[name]["dtype"] == "F64"
    print(f"{name} {header[name]['shape']}")
print(f"{path}: {os.path.getsize(path)} bytes")
