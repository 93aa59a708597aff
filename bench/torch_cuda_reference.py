#!/usr/bin/env python3
"""PyTorch eager on the GPU, the same workloads as bench/cuda_bench.cu (scripts/gpu-check).

Prints one JSON object: milliseconds per iteration (median of CUDA-event timings).
TF32 is off for matmul and cuDNN so that both sides compute in full FP32, as tessera does.
"""
import json
import statistics

import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.backends.cudnn.benchmark = True
dev = torch.device("cuda")


def time_ms(f, reps=20):
    f()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        f()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def main():
    n = 1 << 26
    a, b, c, d, e = (torch.rand(n, device=dev) for _ in range(5))
    out = {"fused_elementwise_ms": time_ms(lambda: a * b + c * d - torch.tanh(e))}
    src = torch.zeros(n, device=dev)
    dst = torch.empty_like(src)
    out["device_copy_ms"] = time_ms(lambda: dst.copy_(src))

    m = 4096
    x, y = torch.rand(m, m, device=dev), torch.rand(m, m, device=dev)
    out["gemm_ms"] = time_ms(lambda: torch.matmul(x, y))

    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.rand(256, 1, 28, 28, device=dev)
    labels = torch.arange(256, device=dev) % 10

    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()

    out["cnn_train_step_ms"] = time_ms(step)

    # attention_fwd_bwd: MultiheadAttention(256, 8) batch first on [16, 128, 256], causal float mask
    # (0 on and below the diagonal, -inf above), loss sum(out * w) / 16, gradients of the input and
    # every parameter (no update).
    mha = nn.MultiheadAttention(256, 8, batch_first=True).to(dev)
    tokens = (torch.rand(16, 128, 256, device=dev) * 2 - 1).requires_grad_()
    weights = torch.rand(16, 128, 256, device=dev) * 2 - 1
    causal = torch.triu(torch.full((128, 128), float("-inf"), device=dev), diagonal=1)

    def attention_step():
        tokens.grad = None
        mha.zero_grad(set_to_none=True)
        attended, _ = mha(tokens, tokens, tokens, attn_mask=causal, need_weights=False)
        loss = (attended * weights).sum() / 16
        loss.backward()

    out["attention_fwd_bwd_ms"] = time_ms(attention_step)

    # lstm_train_step / gru_train_step: nn.LSTM(64, 256) / nn.GRU over [32, 32, 64] (time major),
    # MSE of the last output against a [32, 256] target, backward and an SGD step (cuDNN's RNN).
    sequence = torch.rand(32, 32, 64, device=dev) * 2 - 1
    target = torch.rand(32, 256, device=dev) * 2 - 1
    for name, layer in (("lstm", nn.LSTM(64, 256)), ("gru", nn.GRU(64, 256))):
        layer = layer.to(dev)
        sgd = torch.optim.SGD(layer.parameters(), lr=0.1)

        def recurrent_step(layer=layer, sgd=sgd):
            sgd.zero_grad(set_to_none=True)
            output, _ = layer(sequence)
            nn.functional.mse_loss(output[-1], target).backward()
            sgd.step()

        out[f"{name}_train_step_ms"] = time_ms(recurrent_step)
    out["torch"] = torch.__version__
    out["device"] = torch.cuda.get_device_name()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
