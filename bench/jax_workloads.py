#!/usr/bin/env python3
"""tessera_vs_libtorch's workloads written with JAX and compiled by XLA (jax.jit), on the CPU.

Each workload computes what bench/workloads.cpp defines (the shapes, operations and units of
bench/README.md's table) the way a JAX user writes it: one jitted function per step, state passed
in and out, buffers donated where the C++ runners update in place. Timing follows
tessera_vs_libtorch (bench/harness.cpp): --warmup untimed rounds, then --reps rounds, each of
which waits until the process is idle (at most --settle-ms), runs once untimed, then --burst
times back to back, timed; the value printed is the median of the timed runs (every call ends in
block_until_ready), in ms or, for GEMM, in GFLOP/s (2n^3 per run).

  bench/jax_workloads.py [--binary PATH] [--rounds N] [--threads N] [--reps N] [--warmup N]
                         [--burst N] [--settle-ms N] [workload...]

With --binary (a built tessera_vs_libtorch, e.g. build-bench/bench/tessera_vs_libtorch) it runs
that program with the same thread count, protocol and workload names, and prints one table:
workload, tessera, libtorch, jax, unit, and tessera's time over JAX's. With --rounds 1 (the
default) the program runs once for every workload, then JAX's side. On a shared machine whose
speed drifts, --rounds N alternates the two N times, one workload at a time (the program for that
workload, then JAX's), and prints the medians over the rounds, the median of the rounds' ratios
and their range, so that a slow spell falls on both sides.

--threads N (default 2) limits XLA to N cores: the process is pinned to N of its CPUs (XLA sizes
its thread pool from the CPUs it may run on) and XLA_FLAGS gets --xla_cpu_multi_thread_eigen and
intra_op_parallelism_threads=N. Both must be in place before jax is imported.

Needs JAX for the CPU in a virtual environment:
  python3 -m venv /tmp/tessera-jax-venv && /tmp/tessera-jax-venv/bin/pip install jax
  /tmp/tessera-jax-venv/bin/python bench/jax_workloads.py --binary build-bench/bench/tessera_vs_libtorch

The inputs have the shapes and value ranges of bench/workloads.cpp but come from numpy's
generator, not tessera's, so the losses printed on stderr are not expected to equal the C++
programs'; they show that each step trains (the second loss is the first update's).
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

# workload -> unit; the order is tessera_vs_libtorch's.
WORKLOADS = {
    "elementwise_chain": "ms",
    "gemm_512": "GFLOP/s",
    "gemm_1024": "GFLOP/s",
    "gemm_2048": "GFLOP/s",
    "sum": "ms",
    "softmax": "ms",
    "mlp_grad": "ms",
    "mlp_train_step": "ms",
    "cnn_train_step": "ms",
    "cnn_train_step_reshape_pool": "ms",  # JAX only: cnn_train_step with another max pool (see there)
    "conv_batch1": "GFLOP/s",
    "adam_10M_step": "ms",
    "lstm_train_step": "ms",
    "gru_train_step": "ms",
    "attention_fwd_bwd": "ms",
    "transformer_train_step": "ms",
}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("workloads", nargs="*", help=f"a subset of: {' '.join(WORKLOADS)} (default: all)")
    p.add_argument("--binary", help="tessera_vs_libtorch to run and compare with")
    p.add_argument("--rounds", type=int, default=1, help="with --binary: alternate the two this many times")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=11)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--burst", type=int, default=3)
    p.add_argument("--settle-ms", type=int, default=500)
    a = p.parse_args(argv)
    unknown = [w for w in a.workloads if w not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload(s) {' '.join(unknown)}; known: {' '.join(WORKLOADS)}")
    if a.threads < 1 or a.reps < 1 or a.rounds < 1 or a.warmup < 0 or a.burst < 0 or a.settle_ms < 0:
        p.error("--threads, --reps and --rounds must be positive, --warmup, --burst and --settle-ms not negative")
    return a


def limit_threads(n):
    """Pins the process to n of its CPUs and tells XLA to use n threads (before jax is imported)."""
    cpus = sorted(os.sched_getaffinity(0))
    if n < len(cpus):
        os.sched_setaffinity(0, cpus[:n])
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={n}".strip()


# ---- timing (bench/harness.cpp's time_rounds, for one runner) --------------------------------------


def process_cpu_ms():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return (u.ru_utime + u.ru_stime) * 1e3


def wait_until_idle(max_ms):
    """Sleeps until this process's threads stop using CPU (checked every 10 ms), at most max_ms."""
    slice_ms = 10
    before = process_cpu_ms()
    waited = 0
    while waited < max_ms:
        time.sleep(slice_ms / 1e3)
        now = process_cpu_ms()
        if now - before < 0.05 * slice_ms:
            return
        before = now
        waited += slice_ms


def time_rounds(run, warmup, reps, settle_ms, burst):
    """Median milliseconds of run() (which must block until its result is ready), and the fastest."""
    times = []
    for round_ in range(warmup + reps):
        if settle_ms > 0:
            wait_until_idle(settle_ms)
        if burst > 0:
            run()  # the wake-up run after the idle wait, untimed (see harness.hpp)
        for _ in range(max(burst, 1)):
            t0 = time.perf_counter()
            run()
            t = (time.perf_counter() - t0) * 1e3
            if round_ >= warmup:
                times.append(t)
    times.sort()
    mid = len(times) // 2
    median = times[mid] if len(times) % 2 else 0.5 * (times[mid - 1] + times[mid])
    return median, times[0]


# ---- the workloads ---------------------------------------------------------------------------------


def make_workloads(jax, jnp, np):
    """name -> factory; a factory prepares inputs and jitted functions and returns (run, note), where
    run() performs one timed call and note() says something checkable about the results."""
    lax = jax.lax
    rng = np.random.default_rng(2024)

    def uniform(shape, low, high):
        return jnp.asarray(rng.uniform(low, high, size=shape).astype(np.float32))

    def labels(n, classes):
        return jnp.asarray(rng.integers(0, classes, size=n).astype(np.int32))

    def pytorch_layer(weight_shape):
        """PyTorch-default weights [out, in, ...] and bias [out]: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        fan_in = int(np.prod(weight_shape[1:]))
        bound = 1.0 / np.sqrt(fan_in)
        return [uniform(weight_shape, -bound, bound), uniform((weight_shape[0],), -bound, bound)]

    def linear(x, w, b):  # PyTorch layout: w [out, in]
        return x @ w.T + b

    def cross_entropy(logits, y):  # mean over the batch, integer labels
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), y[:, None], axis=1))

    def mse(a, b):
        return jnp.mean((a - b) ** 2)

    def adam_init(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return (zeros, jax.tree_util.tree_map(jnp.zeros_like, params), jnp.zeros((), jnp.float32))

    def adam_update(params, grads, state, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        """torch.optim.Adam's step (eps added to the bias-corrected sqrt(v)), as tessera's optim::Adam."""
        m, v, t = state
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        c1, c2 = 1 - b1**t, 1 - b2**t
        params = jax.tree_util.tree_map(lambda p, m, v: p - lr / c1 * m / (jnp.sqrt(v) / jnp.sqrt(c2) + eps), params, m, v)
        return params, (m, v, t)

    def train_runner(step, params, opt_state, *data):
        """run() for a jitted step(params, opt_state, *data) -> (params, opt_state, loss), whose
        parameter and optimizer buffers are donated, so they are updated in place as in the C++
        runners. Keeps the first two losses (the second after the first update)."""
        state = {"params": params, "opt": opt_state}
        losses = []

        def run():
            state["params"], state["opt"], loss = step(state["params"], state["opt"], *data)
            loss.block_until_ready()
            if len(losses) < 2:
                losses.append(float(loss))

        return run, lambda: "first losses " + " ".join(f"{l:.5f}" for l in losses)

    n_stream = 1 << 24  # harness.hpp's stream_elements

    def elementwise_chain():
        a, b, c, d, e = (uniform((n_stream,), -2.0, 2.0) for _ in range(5))
        # y is donated and the result takes its buffer: the chain writes into a preallocated y.
        f = jax.jit(lambda y, a, b, c, d, e: a * b + c * d - jnp.tanh(e), donate_argnums=0)
        state = {"y": jnp.zeros_like(a)}

        def run():
            state["y"] = f(state["y"], a, b, c, d, e)
            state["y"].block_until_ready()

        return run, lambda: f"y[:3] {np.asarray(state['y'][:3])}"

    def gemm(n):
        def factory():
            a, b = uniform((n, n), -1.0, 1.0), uniform((n, n), -1.0, 1.0)
            f = jax.jit(lambda a, b: jnp.matmul(a, b, precision=lax.Precision.HIGHEST))
            out = {}

            def run():
                out["c"] = f(a, b).block_until_ready()

            return run, lambda: f"c[0, 0] {float(out['c'][0, 0]):.4f}"

        return factory

    def sum_():
        x = uniform((n_stream,), -1.0, 1.0)
        f = jax.jit(jnp.sum)
        out = {}

        def run():
            out["s"] = f(x).block_until_ready()

        return run, lambda: f"sum {float(out['s']):.3f}"

    def softmax():
        x = uniform((4096, 1000), -4.0, 4.0)
        f = jax.jit(lambda x: jax.nn.softmax(x, axis=-1))
        out = {}

        def run():
            out["y"] = f(x).block_until_ready()

        return run, lambda: f"row sum {float(out['y'][0].sum()):.6f}"

    def mlp_grad():
        # w [in, out] here (matmul(x, w) + b), as tessera's runner takes them.
        x, y = uniform((128, 784), 0.0, 1.0), labels(128, 10)
        params = []
        for fan_in, fan_out in ((784, 512), (512, 512), (512, 10)):
            bound = 1.0 / np.sqrt(fan_in)
            params += [uniform((fan_in, fan_out), -bound, bound), uniform((fan_out,), -bound, bound)]

        def loss(p, x, y):
            h = jax.nn.relu(x @ p[0] + p[1])
            h = jax.nn.relu(h @ p[2] + p[3])
            return cross_entropy(h @ p[4] + p[5], y)

        f = jax.jit(jax.value_and_grad(loss))
        out = {}

        def run():
            out["loss"], out["grads"] = jax.block_until_ready(f(params, x, y))

        return run, lambda: f"loss {float(out['loss']):.5f}"

    def mlp_train_step():
        x, y = uniform((128, 784), 0.0, 1.0), labels(128, 10)
        params = pytorch_layer((512, 784)) + pytorch_layer((512, 512)) + pytorch_layer((10, 512))

        def loss(p, x, y):
            h = jax.nn.relu(linear(x, p[0], p[1]))
            h = jax.nn.relu(linear(h, p[2], p[3]))
            return cross_entropy(linear(h, p[4], p[5]), y)

        def _step(p, buf, x, y):
            # torch.optim.SGD(lr 0.01, momentum 0.9): buf = 0.9 buf + g (buf = g at the first step,
            # which the zero start gives), p -= lr buf.
            value, g = jax.value_and_grad(loss)(p, x, y)
            buf = jax.tree_util.tree_map(lambda b, g: 0.9 * b + g, buf, g)
            p = jax.tree_util.tree_map(lambda p, b: p - 0.01 * b, p, buf)
            return p, buf, value

        step = jax.jit(_step, donate_argnums=(0, 1))
        return train_runner(step, params, jax.tree_util.tree_map(jnp.zeros_like, params), x, y)

    def cnn_train_step(reshape_pool):
        """NHWC activations and HWIO kernels: the layout XLA's CPU convolutions (Eigen's spatial
        convolution) take without transposes (NCHW measured slower here, its forward 3x). The
        computation is the NCHW one of the C++ runners; flattening [64, 7, 7, 64] in HWC order only
        permutes fc1's input columns.

        Max pooling as flax's nn.max_pool writes it, lax.reduce_window, whose gradient XLA
        computes with select_and_scatter, about half of the step on the CPU; reshape_pool: the
        maximum over a [N, H/2, 2, W/2, 2, C] view instead (the same values; ties share the
        gradient, which only happens between zeros of the ReLU, whose gradient there is 0)."""

        def factory():
            x = jnp.transpose(uniform((64, 1, 28, 28), 0.0, 1.0), (0, 2, 3, 1))
            y = labels(64, 10)
            conv1, conv2 = pytorch_layer((32, 1, 3, 3)), pytorch_layer((64, 32, 3, 3))
            to_hwio = lambda w: jnp.transpose(w, (2, 3, 1, 0))  # [out, in, kh, kw] -> [kh, kw, in, out]
            params = [to_hwio(conv1[0]), conv1[1], to_hwio(conv2[0]), conv2[1]]
            params += pytorch_layer((128, 3136)) + pytorch_layer((10, 128))

            def conv(x, w, b):
                out = lax.conv_general_dilated(x, w, window_strides=(1, 1), padding=((1, 1), (1, 1)),
                                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
                return out + b

            def pool(x):
                if reshape_pool:
                    n, h, w, c = x.shape
                    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
                return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

            def loss(p, x, y):
                h = pool(jax.nn.relu(conv(x, p[0], p[1])))
                h = pool(jax.nn.relu(conv(h, p[2], p[3])))
                h = jax.nn.relu(linear(h.reshape(h.shape[0], -1), p[4], p[5]))
                return cross_entropy(linear(h, p[6], p[7]), y)

            def _step(p, opt, x, y):
                value, g = jax.value_and_grad(loss)(p, x, y)
                p, opt = adam_update(p, g, opt)
                return p, opt, value

            step = jax.jit(_step, donate_argnums=(0, 1))
            return train_runner(step, params, adam_init(params), x, y)

        return factory

    def conv_batch1():
        # One 64-channel 56x56 image, 3x3 conv with bias into 64 channels, forward only; NHWC/HWIO
        # as in cnn_train_step.
        x = jnp.transpose(uniform((1, 64, 56, 56), 0.0, 1.0), (0, 2, 3, 1))
        w, b = pytorch_layer((64, 64, 3, 3))
        w = jnp.transpose(w, (2, 3, 1, 0))
        f = jax.jit(lambda x, w, b: lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                                             dimension_numbers=("NHWC", "HWIO", "NHWC")) + b)
        out = {}

        def run():
            out["y"] = f(x, w, b).block_until_ready()

        return run, lambda: f"y[0, 0, 0, 0] {float(out['y'][0, 0, 0, 0]):.4f}"

    def adam_10m_step():
        n = 10_000_000
        p, g = uniform((n,), -1.0, 1.0), uniform((n,), 0.1, 1.0)

        def _step(p, opt, g):
            p, opt = adam_update(p, g, opt)
            return p, opt

        step = jax.jit(_step, donate_argnums=(0, 1))
        state = {"p": p, "opt": adam_init(p)}

        def run():
            state["p"], state["opt"] = step(state["p"], state["opt"], g)
            state["p"].block_until_ready()

        return run, lambda: f"step {int(state['opt'][2])}"

    def recurrent_train_step(lstm):
        def factory():
            steps, batch, features, hidden = 32, 32, 64, 256
            gates = 4 if lstm else 3
            x = uniform((steps, batch, features), -1.0, 1.0)
            target = uniform((batch, hidden), -0.5, 0.5)
            bound = 1.0 / np.sqrt(hidden)  # torch.nn.LSTM/GRU: every tensor from U(-1/sqrt(H), 1/sqrt(H))
            params = [uniform(s, -bound, bound) for s in
                      ((gates * hidden, features), (gates * hidden, hidden), (gates * hidden,), (gates * hidden,))]

            def last_output(p, x):
                w_ih, w_hh, b_ih, b_hh = p
                # The input projections of all steps in one GEMM, as PyTorch's CPU kernels do too.
                xs = x @ w_ih.T + b_ih
                h0 = jnp.zeros((batch, hidden), x.dtype)
                if lstm:  # gates i, f, g, o (PyTorch's order)
                    def cell(carry, xw):
                        h, c = carry
                        i, f, g, o = jnp.split(xw + h @ w_hh.T + b_hh, 4, axis=-1)
                        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                        h = jax.nn.sigmoid(o) * jnp.tanh(c)
                        return (h, c), None

                    (h, _), _ = lax.scan(cell, (h0, h0), xs)
                else:  # gates r, z, n
                    def cell(h, xw):
                        xr, xz, xn = jnp.split(xw, 3, axis=-1)
                        hr, hz, hn = jnp.split(h @ w_hh.T + b_hh, 3, axis=-1)
                        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
                        n = jnp.tanh(xn + r * hn)
                        return (1 - z) * n + z * h, None

                    h, _ = lax.scan(cell, h0, xs)
                return h

            def _step(p, no_state, x, target):  # plain SGD (lr 0.1) keeps no optimizer state
                value, g = jax.value_and_grad(lambda p: mse(last_output(p, x), target))(p)
                return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, p, g), no_state, value

            step = jax.jit(_step, donate_argnums=0)
            return train_runner(step, params, (), x, target)

        return factory

    def attention_parameters(e):
        """in_proj_weight [3E, E], in_proj_bias, out_proj.weight [E, E], out_proj.bias, with the
        value ranges of workloads.cpp's push_attention_parameters."""
        xavier, lin = np.sqrt(6.0 / (4 * e)), 1.0 / np.sqrt(e)
        return [uniform((3 * e, e), -xavier, xavier), uniform((3 * e,), -0.1, 0.1),
                uniform((e, e), -lin, lin), uniform((e,), -0.1, 0.1)]

    def attention(p, x, heads, causal):
        """torch.nn.MultiheadAttention(x, x, x) on batch-first x [B, L, E], dropout 0."""
        w_in, b_in, w_out, b_out = p
        b, l, e = x.shape
        d = e // heads
        q, k, v = jnp.split(linear(x, w_in, b_in), 3, axis=-1)
        q, k, v = (t.reshape(b, l, heads, d) for t in (q, k, v))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d).astype(np.float32)
        if causal:
            scores = jnp.where(jnp.tril(jnp.ones((l, l), bool)), scores, -jnp.inf)
        out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v).reshape(b, l, e)
        return linear(out, w_out, b_out)

    def attention_fwd_bwd():
        batch, seq, e = 16, 128, 256
        x, w = uniform((batch, seq, e), -1.0, 1.0), uniform((batch, seq, e), -1.0, 1.0)
        params = attention_parameters(e)

        def loss(p, x):
            return jnp.sum(attention(p, x, 8, causal=True) * w) / batch

        # Gradients of every parameter and of the input.
        f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        out = {}

        def run():
            out["loss"], out["grads"] = jax.block_until_ready(f(params, x))

        return run, lambda: f"loss {float(out['loss']):.4f}"

    def transformer_train_step():
        batch, seq, e, ff = 16, 128, 256, 1024
        x, target = uniform((batch, seq, e), -1.0, 1.0), uniform((batch, seq, e), -1.0, 1.0)
        params = []
        for _ in range(2):  # each layer's 12 tensors in PyTorch's named_parameters order
            layer = attention_parameters(e)
            layer += [uniform((ff, e), -1 / np.sqrt(e), 1 / np.sqrt(e)), uniform((ff,), -1 / np.sqrt(e), 1 / np.sqrt(e))]
            layer += [uniform((e, ff), -1 / np.sqrt(ff), 1 / np.sqrt(ff)), uniform((e,), -1 / np.sqrt(ff), 1 / np.sqrt(ff))]
            for _ in range(2):  # norm1, norm2
                layer += [uniform((e,), 0.9, 1.1), uniform((e,), -0.1, 0.1)]
            params.append(layer)

        def layer_norm(x, w, b, eps=1e-5):
            mu = jnp.mean(x, axis=-1, keepdims=True)
            var = jnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
            return (x - mu) * lax.rsqrt(var + eps) * w + b

        def encoder_layer(p, x):
            # Post-norm (PyTorch's default norm_first=False), ReLU, dropout 0, no mask.
            x = layer_norm(x + attention(p[0:4], x, 8, causal=False), p[8], p[9])
            return layer_norm(x + linear(jax.nn.relu(linear(x, p[4], p[5])), p[6], p[7]), p[10], p[11])

        def loss(p, x, target):
            return mse(encoder_layer(p[1], encoder_layer(p[0], x)), target)

        def _step(p, opt, x, target):
            value, g = jax.value_and_grad(loss)(p, x, target)
            p, opt = adam_update(p, g, opt)
            return p, opt, value

        step = jax.jit(_step, donate_argnums=(0, 1))
        return train_runner(step, params, adam_init(params), x, target)

    return {
        "elementwise_chain": elementwise_chain,
        "gemm_512": gemm(512),
        "gemm_1024": gemm(1024),
        "gemm_2048": gemm(2048),
        "sum": sum_,
        "softmax": softmax,
        "mlp_grad": mlp_grad,
        "mlp_train_step": mlp_train_step,
        "cnn_train_step": cnn_train_step(False),
        "cnn_train_step_reshape_pool": cnn_train_step(True),
        "conv_batch1": conv_batch1,
        "adam_10M_step": adam_10m_step,
        "lstm_train_step": recurrent_train_step(True),
        "gru_train_step": recurrent_train_step(False),
        "attention_fwd_bwd": attention_fwd_bwd,
        "transformer_train_step": transformer_train_step,
    }


# Floating-point operations per run of the workloads reported in GFLOP/s (workloads.cpp's flops).
FLOPS = {
    "gemm_512": 2.0 * 512**3,
    "gemm_1024": 2.0 * 1024**3,
    "gemm_2048": 2.0 * 2048**3,
    "conv_batch1": 2.0 * (64 * 56 * 56) * (64 * 9),
}


def report_value(name, ms):
    return FLOPS[name] / (ms * 1e6) if WORKLOADS[name] == "GFLOP/s" else ms


def fmt(unit, value):
    """A value as tessera_vs_libtorch prints it: GFLOP/s with one decimal, ms and ratios with two."""
    if value is None:
        return "-"
    return f"{value:.1f}" if unit == "GFLOP/s" else f"{value:.2f}"


# ---- tessera_vs_libtorch ---------------------------------------------------------------------------


def run_binary(o, workloads):
    """Runs tessera_vs_libtorch on `workloads` (all where empty); returns {row: (tessera, libtorch,
    unit)} from its stdout lines."""
    cmd = [o.binary, "--threads", str(o.threads), "--reps", str(o.reps), "--warmup", str(o.warmup),
           "--burst", str(o.burst), "--settle-ms", str(o.settle_ms)] + workloads
    print("# running " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(proc.stderr)
    if proc.returncode not in (0, 1):  # 1: a result differed beyond tolerance, the timings still stand
        sys.exit(f"jax_workloads.py: {o.binary} failed with status {proc.returncode}")

    def number(text):
        return None if text == "-" else float(text)

    rows = {}
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) == 4:  # name tessera libtorch unit ("-" where a column has no value)
            rows[fields[0]] = (number(fields[1]), number(fields[2]), fields[3])
    return rows


def main(argv):
    o = parse_args(argv)
    selected = o.workloads or list(WORKLOADS)

    if o.binary and not (os.path.isfile(o.binary) and os.access(o.binary, os.X_OK)):
        sys.exit(f"jax_workloads.py: {o.binary} is not an executable (build it: see bench/README.md)")
    # Before jax is imported and before the C++ program runs, so both see the same CPUs.
    limit_threads(o.threads)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the CPU even where JAX could find an accelerator
    cpus = sorted(os.sched_getaffinity(0))

    rounds = o.rounds if o.binary else 1
    alternate = rounds > 1
    # One dict per round: tessera_vs_libtorch's rows, and JAX's value per workload.
    theirs = [run_binary(o, o.workloads)] if o.binary and not alternate else [{} for _ in range(rounds)]
    ours = [{} for _ in range(rounds)]

    try:
        import jax
        import jax.numpy as jnp
        import numpy as np
    except ImportError:
        sys.exit("jax_workloads.py: jax is not installed here. In a virtual environment:\n"
                 "  python3 -m venv /tmp/tessera-jax-venv && /tmp/tessera-jax-venv/bin/pip install jax\n"
                 "  /tmp/tessera-jax-venv/bin/python bench/jax_workloads.py [--binary PATH]")

    print(f"# jax {jax.__version__} on {jax.devices()[0].platform}, CPUs {cpus}, XLA_FLAGS={os.environ['XLA_FLAGS']!r}; "
          f"medians of {o.reps} rounds after {o.warmup} warm-up rounds, settling <= {o.settle_ms} ms, then per turn "
          f"{max(o.burst, 1)} timed run(s){' after an untimed one' if o.burst > 0 else ''}"
          f"{f'; {rounds} rounds alternating with tessera_vs_libtorch' if alternate else ''}", file=sys.stderr, flush=True)

    factories = make_workloads(jax, jnp, np)
    kept = {}  # alternating: each workload's jitted step, compiled once for every round
    for round_ in range(rounds):
        for name in selected:
            if alternate:
                theirs[round_].update(run_binary(o, [name]))
                if name not in kept:
                    kept[name] = factories[name]()
                run, note = kept[name]
            else:
                run, note = factories[name]()
            median, fastest = time_rounds(run, o.warmup, o.reps, o.settle_ms, o.burst)
            ours[round_][name] = report_value(name, median)
            print(f"# {name}: {note()}; fastest run {fastest:.2f} ms", file=sys.stderr, flush=True)
            if not o.binary:
                print(f"{name} {fmt(WORKLOADS[name], ours[round_][name])} {WORKLOADS[name]}", flush=True)
            del run, note

    if not o.binary:
        return

    def jax_value(round_, name):
        """JAX's value for a row of tessera_vs_libtorch in one round (None where it has none)."""
        if name.endswith("_vs_floor"):
            # JAX's time over the memory floor tessera_vs_libtorch measured (same machine, same
            # round); the floor's row is "triad_floor" for elementwise_chain, "<name>_triad_floor" else.
            workload = name[: -len("_vs_floor")]
            floor = theirs[round_].get("triad_floor" if workload == "elementwise_chain" else f"{workload}_triad_floor")
            if workload in ours[round_] and floor and floor[0]:
                return ours[round_][workload] / floor[0]
            return None
        return ours[round_].get(name)

    def median(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    spread = f" {'range':>11}" if alternate else ""
    print(f"{'workload':<28} {'tessera':>9} {'libtorch':>9} {'jax':>9} {'unit':<8} {'tessera/jax':>11}{spread}")
    rows = list(dict.fromkeys(row for round_rows in theirs for row in round_rows))
    for name in rows:
        unit = next(r[name][2] for r in theirs if name in r)
        tessera = median(r[name][0] if name in r else None for r in theirs)
        libtorch = median(r[name][1] if name in r else None for r in theirs)
        ratios = []
        for round_ in range(rounds):
            t, j = theirs[round_].get(name, (None,))[0], jax_value(round_, name)
            if t is not None and j:
                # Time ratios throughout (below 1: tessera is faster); for GFLOP/s the values invert.
                ratios.append(j / t if unit == "GFLOP/s" else t / j)
        ratio = median(ratios)
        line = (f"{name:<28} {fmt(unit, tessera):>9} {fmt(unit, libtorch):>9} "
                f"{fmt(unit, median(jax_value(r, name) for r in range(rounds))):>9} {unit:<8} "
                f"{(f'{ratio:.2f}' if ratio is not None else '-'):>11}")
        if alternate:
            line += f" {(f'{min(ratios):.2f}-{max(ratios):.2f}' if ratios else '-'):>11}"
        print(line)
    for name in selected:
        if name not in rows:  # not in this build of tessera_vs_libtorch
            unit, none = WORKLOADS[name], "-"
            print(f"{name:<28} {none:>9} {none:>9} {fmt(unit, median(ours[r][name] for r in range(rounds))):>9} {unit:<8} "
                  f"{none:>11}" + (f" {none:>11}" if alternate else ""))
    print("# tessera/jax: tessera's time over JAX's (for GFLOP/s, JAX's rate over tessera's); below 1: tessera is faster"
          + ("; with --rounds, the median of the rounds' ratios and their range" if alternate else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
