#!/usr/bin/python3
"""Writes torch_fixtures.hpp: inputs and PyTorch's outputs for the nn and optim tests.

Run with Debian's python3-torch (apt install python3-torch):  /usr/bin/python3 make_torch_fixtures.py
The tests only read the generated header, so they never need torch. Values are float64.
"""
import os
import torch
import torch.nn.functional as F

torch.manual_seed(1234)
torch.set_default_dtype(torch.float64)
out = []


def emit(name, t):
    t = torch.as_tensor(t, dtype=torch.float64).detach().contiguous()
    shape = ", ".join(str(s) for s in t.shape)
    values = ", ".join(repr(float(v)) for v in t.flatten())
    out.append(f"inline const Array {name}{{{{{shape}}}, {{{values}}}}};")


# Linear: y = x W^T + b
x = torch.randn(4, 3)
lin = torch.nn.Linear(3, 2)
emit("linear_x", x)
emit("linear_weight", lin.weight)
emit("linear_bias", lin.bias)
emit("linear_y", lin(x))

# Activations
a = torch.randn(3, 5) * 2
emit("act_x", a)
emit("act_relu", F.relu(a))
emit("act_leaky_relu_0_2", F.leaky_relu(a, 0.2))
emit("act_gelu", F.gelu(a))
emit("act_silu", F.silu(a))
emit("act_sigmoid", torch.sigmoid(a))
emit("act_tanh", torch.tanh(a))
emit("act_softmax", F.softmax(a, dim=-1))
f = torch.randn(2, 3, 2, 2)
emit("flatten_x", f)
emit("flatten_y", torch.nn.Flatten()(f))

# Losses
logits = torch.randn(5, 4) * 2
labels = torch.tensor([3, 0, 2, 2, 1])
weight = torch.tensor([0.5, 2.0, 1.0, 1.5])
emit("ce_logits", logits)
emit("ce_labels", labels)
emit("ce_weight", weight)
emit("ce_mean", F.cross_entropy(logits, labels))
emit("ce_sum", F.cross_entropy(logits, labels, reduction="sum"))
emit("ce_none", F.cross_entropy(logits, labels, reduction="none"))
emit("ce_smooth", F.cross_entropy(logits, labels, label_smoothing=0.1))
emit("ce_weighted", F.cross_entropy(logits, labels, weight=weight))
emit("ce_weighted_smooth", F.cross_entropy(logits, labels, weight=weight, label_smoothing=0.2))
emit("ce_weighted_sum", F.cross_entropy(logits, labels, weight=weight, reduction="sum"))
emit("nll_mean", F.nll_loss(F.log_softmax(logits, -1), labels))
p = torch.randn(3, 4)
t = torch.randn(3, 4)
emit("reg_input", p)
emit("reg_target", t)
emit("mse_mean", F.mse_loss(p, t))
emit("mse_sum", F.mse_loss(p, t, reduction="sum"))
emit("l1_mean", F.l1_loss(p, t))
emit("l1_none", F.l1_loss(p, t, reduction="none"))
emit("huber_mean_0_5", F.huber_loss(p, t, delta=0.5))
emit("huber_none_1", F.huber_loss(p, t, reduction="none"))
bt = torch.rand(3, 4)
emit("bce_target", bt)
emit("bce_mean", F.binary_cross_entropy_with_logits(p * 3, bt))
emit("bce_none", F.binary_cross_entropy_with_logits(p * 3, bt, reduction="none"))

# Convolutions: (stride, padding, dilation, groups) cases on a [2, 4, 7, 6] input.
cx = torch.randn(2, 4, 7, 6)
emit("conv_x", cx)
conv_cases = {
    "basic": dict(stride=1, padding=0, dilation=1, groups=1, out=3, k=(3, 3)),
    "pad_stride": dict(stride=2, padding=1, dilation=1, groups=1, out=5, k=(3, 2)),
    "dilated": dict(stride=1, padding=2, dilation=2, groups=1, out=2, k=(3, 3)),
    "groups": dict(stride=(1, 2), padding=(1, 0), dilation=1, groups=2, out=4, k=(2, 3)),
}
for name, c in conv_cases.items():
    w = torch.randn(c["out"], 4 // c["groups"], *c["k"])
    b = torch.randn(c["out"])
    emit(f"conv_{name}_w", w)
    emit(f"conv_{name}_b", b)
    emit(f"conv_{name}_y", F.conv2d(cx, w, b, stride=c["stride"], padding=c["padding"], dilation=c["dilation"],
                                     groups=c["groups"]))
emit("pool_max_2", F.max_pool2d(cx, 2))
emit("pool_max_3_s2_p1", F.max_pool2d(cx, 3, stride=2, padding=1))
emit("pool_avg_2", F.avg_pool2d(cx, 2))
emit("pool_avg_3_s2_p1", F.avg_pool2d(cx, 3, stride=2, padding=1))

# Optimizers: one parameter of 5 elements, 4 steps with given gradients.
p0 = torch.randn(5)
grads = [torch.randn(5) for _ in range(4)]
emit("opt_p0", p0)
emit("opt_grads", torch.stack(grads))
configs = {
    "sgd": lambda q: torch.optim.SGD([q], lr=0.1),
    "sgd_momentum": lambda q: torch.optim.SGD([q], lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "sgd_nesterov": lambda q: torch.optim.SGD([q], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda q: torch.optim.Adam([q], lr=0.01, weight_decay=0.1),
    "adamw": lambda q: torch.optim.AdamW([q], lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
    "rmsprop": lambda q: torch.optim.RMSprop([q], lr=0.01, weight_decay=0.1),
    "rmsprop_centered_momentum": lambda q: torch.optim.RMSprop([q], lr=0.01, momentum=0.5, centered=True),
    "adagrad": lambda q: torch.optim.Adagrad([q], lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.2),
}
for name, make in configs.items():
    q = p0.clone().requires_grad_(True)
    opt = make(q)
    steps = []
    for g in grads:
        q.grad = g.clone()
        opt.step()
        steps.append(q.detach().clone())
    emit(f"opt_{name}", torch.stack(steps))

# BatchNorm2d: two training steps (running statistics after each), then evaluation; and the
# gradients of sum(y * r) in training mode.
bx1 = torch.randn(4, 3, 3, 2) * 2 + 1
bx2 = torch.randn(4, 3, 3, 2)
bn = torch.nn.BatchNorm2d(3, momentum=0.2)
with torch.no_grad():
    bn.weight.copy_(torch.randn(3))
    bn.bias.copy_(torch.randn(3))
emit("bn2d_x1", bx1)
emit("bn2d_x2", bx2)
emit("bn2d_weight", bn.weight)
emit("bn2d_bias", bn.bias)
emit("bn2d_y1", bn(bx1))
emit("bn2d_running_mean1", bn.running_mean)
emit("bn2d_running_var1", bn.running_var)
bx2g = bx2.clone().requires_grad_(True)
y2 = bn(bx2g)
emit("bn2d_y2", y2)
emit("bn2d_running_mean2", bn.running_mean)
emit("bn2d_running_var2", bn.running_var)
r = torch.randn(4, 3, 3, 2)
emit("bn2d_r", r)
(y2 * r).sum().backward()
emit("bn2d_dx2", bx2g.grad)
emit("bn2d_dweight2", bn.weight.grad)
emit("bn2d_dbias2", bn.bias.grad)
bn.eval()
emit("bn2d_eval_y", bn(bx1))
# BatchNorm1d on [N, C] and [N, C, L], default options.
b1 = torch.randn(5, 4) * 3
bn1 = torch.nn.BatchNorm1d(4)
emit("bn1d_x", b1)
emit("bn1d_y", bn1(b1))
emit("bn1d_running_var", bn1.running_var)
b3 = torch.randn(3, 2, 4)
emit("bn1d3_x", b3)
emit("bn1d3_y", torch.nn.BatchNorm1d(2)(b3))

# LayerNorm over the last axis and over the last two axes, with random affine parameters.
lx = torch.randn(2, 3, 4) * 2 + 0.5
ln1 = torch.nn.LayerNorm(4)
ln2 = torch.nn.LayerNorm([3, 4], eps=1e-3)
with torch.no_grad():
    for m in (ln1, ln2):
        m.weight.copy_(torch.randn_like(m.weight))
        m.bias.copy_(torch.randn_like(m.bias))
emit("ln_x", lx)
emit("ln1_weight", ln1.weight)
emit("ln1_bias", ln1.bias)
emit("ln1_y", ln1(lx))
emit("ln2_weight", ln2.weight)
emit("ln2_bias", ln2.bias)
emit("ln2_y", ln2(lx))

# Embedding with a padding row: lookup and the table's gradient of sum(y * r).
emb = torch.nn.Embedding(6, 3, padding_idx=2)
ids = torch.tensor([[1, 2, 5], [1, 0, 2]])
emit("emb_weight", emb.weight)
emit("emb_ids", ids)
ey = emb(ids)
emit("emb_y", ey)
er = torch.randn(2, 3, 3)
emit("emb_r", er)
(ey * er).sum().backward()
emit("emb_dweight", emb.weight.grad)

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "torch_fixtures.hpp"), "w") as fh:
    fh.write("// Generated by make_torch_fixtures.py with PyTorch " + torch.__version__ + "; do not edit.\n")
    fh.write("#pragma once\n\n#include <vector>\n\nnamespace torch_fixtures {\n\n")
    fh.write("struct Array {\n  std::vector<long> shape;\n  std::vector<double> values;\n};\n\n")
    fh.write("\n".join(out))
    fh.write("\n\n}  // namespace torch_fixtures\n")
