#!/usr/bin/env python3
"""The main job (examples/fashion_mnist.cpp) written in Keras, for a TensorFlow comparison.

Trains the same CNN on the same Fashion-MNIST IDX files with the same recipe and ends with the
main job's machine-readable line, plus the framework:

  {"test_accuracy": 0.9083, "train_seconds": 23.2, "epochs": 2, "framework": "tensorflow 2.21.0"}

What is matched (see examples/fashion_mnist.cpp and examples/fashion_models.hpp):
  model     conv 3x3 pad 1 (1 -> C, no bias), batch norm, ReLU, maxpool 2,
            conv 3x3 pad 1 (C -> 2C, no bias), batch norm, ReLU, maxpool 2, flatten,
            dense 49*2C -> H, ReLU, dropout 0.3, dense H -> 10 (logits); C = --channels (16),
            H = --hidden (128)
  init      PyTorch's defaults, which tessera uses: weights and biases from
            U(-1/sqrt(fan_in), 1/sqrt(fan_in)); batch norm gamma 1, beta 0, eps 1e-5,
            running averages updated with weight 0.1 (Keras momentum 0.9)
  loss      softmax cross-entropy of the logits, mean over the batch
  optimizer Adam (beta1 0.9, beta2 0.999, eps 1e-8) in PyTorch's form, lr --lr (2e-3), with a
            per-step schedule: linear warmup over min(100, total/10) steps, then cosine decay
            to 0 at the last step
  data      pixels / 255, normalized with mean 0.2860 and deviation 0.3530, no augmentation;
            batch --batch (64), reshuffled every epoch, the last partial batch kept
  timing    train_seconds: wall-clock of the training batches of every epoch, without the
            per-epoch evaluation on the 10,000 test images (as train::fit's "seconds")
  accuracy  test_accuracy: the evaluation on the test images after the last epoch

Known differences, none of which should matter at this scale: the layers are NHWC (TensorFlow's
native layout on the CPU; the flatten order differs, which only permutes the first dense layer's
inputs), the initial values and shuffling come from TensorFlow's generators, and Keras updates
the running variance with the biased batch variance (tessera, like PyTorch, with the unbiased
one: a factor of 1 + 1/50176 at batch 64).

  bench/keras_fashion.py [--data DIR] [--epochs N] [--batch B] [--lr X] [--threads T]
                         [--channels C] [--hidden H] [--seed S] [--limit N]

--threads T sets TensorFlow's intra-op and inter-op thread pools (0: TensorFlow's defaults, all
cores, as the main job's 0 is). Needs tensorflow (bench/tf_compare.sh installs tensorflow-cpu into
a virtual environment and runs this beside the main job).
"""

import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up notices out of the output
try:
    import keras
    import numpy as np
    import tensorflow as tf
except ImportError as e:
    sys.exit(f"keras_fashion.py: {e.name} is not installed here; bench/tf_compare.sh sets up a virtual "
             "environment with tensorflow-cpu (or: pip install tensorflow-cpu)")

# Mean and standard deviation of the training pixels (fashion::pixel_mean / pixel_std).
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="directory of the *-idx?-ubyte.gz files")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=0, help="TensorFlow intra- and inter-op threads (0: default)")
    p.add_argument("--channels", type=int, default=16, help="width of the first conv (the second has twice as many)")
    p.add_argument("--hidden", type=int, default=128, help="units of the dense layer")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--limit", type=int, default=0, help="train on the first N images only (0: all)")
    a = p.parse_args(argv)
    if a.epochs < 1 or a.batch < 1 or not a.lr > 0 or a.limit < 0 or a.channels < 1 or a.hidden < 1 or a.threads < 0:
        p.error("epochs, batch, lr, channels and hidden must be positive, limit and threads not negative")
    return a


def read_idx(path):
    """An IDX file (gzip-compressed or not) as a numpy array of its own dtype and shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, rank = struct.unpack(">HBB", data[:4])
    # Element types of the format; Fashion-MNIST uses 0x08 (unsigned byte) only.
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if zero != 0 or dtype_code not in dtypes:
        raise ValueError(f"{path}: not an IDX file")
    shape = struct.unpack(f">{rank}I", data[4 : 4 + 4 * rank])
    values = np.frombuffer(data, dtype=dtypes[dtype_code], offset=4 + 4 * rank)
    if values.size != math.prod(shape):
        raise ValueError(f"{path}: {values.size} values for shape {shape}")
    return values.reshape(shape)


def load(directory, split, limit):
    """Normalized images [N, 28, 28, 1] (NHWC) as float32 and labels as int64."""
    images = read_idx(os.path.join(directory, f"{split}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(directory, f"{split}-labels-idx1-ubyte.gz"))
    if limit > 0:
        images, labels = images[:limit], labels[:limit]
    x = (images.astype(np.float32) / np.float32(255) - np.float32(PIXEL_MEAN)) / np.float32(PIXEL_STD)
    return x[..., np.newaxis], labels.astype(np.int64)


def main(argv):
    o = parse_args(argv)

    # Must precede any TensorFlow op: the pools are created by the first one.
    if o.threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(o.threads)
        tf.config.threading.set_inter_op_parallelism_threads(o.threads)
    keras.utils.set_random_seed(o.seed)

    x_train, y_train = load(o.data, "train", o.limit)
    x_test, y_test = load(o.data, "t10k", 0)
    print(f"Fashion-MNIST: {len(x_train)} training and {len(x_test)} test images, TensorFlow {tf.__version__} "
          f"(Keras {keras.__version__}), intra-op threads {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}, "
          f"inter-op threads {tf.config.threading.get_inter_op_parallelism_threads() or 'default'}", flush=True)

    def pytorch_uniform(fan_in):
        bound = 1.0 / math.sqrt(fan_in)
        return keras.initializers.RandomUniform(-bound, bound)

    # VarianceScaling(1/3, fan_in, uniform) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with Keras's fan_in
    # (kernel height * width * input channels for a conv), i.e. PyTorch's default weights.
    def weights():
        return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")

    c, h = o.channels, o.hidden
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(c, 3, padding="same", use_bias=False, kernel_initializer=weights()),
            layers.BatchNormalization(momentum=0.9, epsilon=1e-5),
            layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Conv2D(2 * c, 3, padding="same", use_bias=False, kernel_initializer=weights()),
            layers.BatchNormalization(momentum=0.9, epsilon=1e-5),
            layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(h, kernel_initializer=weights(), bias_initializer=pytorch_uniform(2 * c * 7 * 7)),
            layers.ReLU(),
            layers.Dropout(0.3),
            layers.Dense(10, kernel_initializer=weights(), bias_initializer=pytorch_uniform(h)),
        ],
        name="fashion_cnn",
    )

    steps_per_epoch = -(-len(x_train) // o.batch)  # the last partial batch is a step too
    total_steps = steps_per_epoch * o.epochs
    warmup = min(100, total_steps // 10)
    if total_steps <= warmup:
        sys.exit("keras_fashion.py: need more training steps than warmup steps")

    class CosineWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
        """optim::CosineWithWarmup: the rate for 0-based step s (Keras passes the steps taken so far)."""

        def __call__(self, step):
            s = tf.cast(step, tf.float32)
            warm = o.lr * (s + 1.0) / float(max(warmup, 1))
            progress = (s - warmup) / float(total_steps - warmup)
            cosine = 0.5 * o.lr * (1.0 + tf.cos(math.pi * tf.minimum(progress, 1.0)))
            return tf.where(s < warmup, warm, cosine)

        def get_config(self):
            return {}

    class TorchAdam(keras.optimizers.Adam):
        """Adam with eps added to the bias-corrected sqrt(v), as PyTorch and tessera's optim::Adam do:
        p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps). (Keras adds eps to the
        uncorrected sqrt(v), a larger effective eps in the first steps.)"""

        def update_step(self, gradient, variable, learning_rate):
            ops = keras.ops
            dtype = variable.dtype
            lr = ops.cast(learning_rate, dtype)
            gradient = ops.cast(gradient, dtype)
            t = ops.cast(self.iterations + 1, dtype)
            correction1 = 1 - ops.power(ops.cast(self.beta_1, dtype), t)
            correction2 = 1 - ops.power(ops.cast(self.beta_2, dtype), t)
            m = self._momentums[self._get_variable_index(variable)]
            v = self._velocities[self._get_variable_index(variable)]
            self.assign_add(m, (gradient - m) * (1 - self.beta_1))
            self.assign_add(v, (ops.square(gradient) - v) * (1 - self.beta_2))
            denominator = ops.sqrt(v) / ops.sqrt(correction2) + self.epsilon
            self.assign_sub(variable, (lr / correction1) * m / denominator)

    model.compile(
        optimizer=TorchAdam(learning_rate=CosineWithWarmup(), beta_1=0.9, beta_2=0.999, epsilon=1e-8),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],  # the main job counts training hits per batch too
    )
    model.summary()

    class EpochTimer(keras.callbacks.Callback):
        """Each epoch's wall-clock from its start to the end of its last training batch: Keras
        evaluates the validation data between that batch and on_epoch_end. Also keeps the first
        step's time, which includes tracing the training step into a TensorFlow graph."""

        def __init__(self):
            super().__init__()
            self.seconds = []
            self.first_step = None

        def on_epoch_begin(self, epoch, logs=None):
            self.start = self.last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.last = time.perf_counter()
            if self.first_step is None:
                self.first_step = self.last - self.start

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(self.last - self.start)

    timer = EpochTimer()
    history = model.fit(
        x_train,
        y_train,
        batch_size=o.batch,
        epochs=o.epochs,
        shuffle=True,
        validation_data=(x_test, y_test),
        validation_batch_size=1000,  # the main job's test loader batch
        callbacks=[timer],
        verbose=2,  # one line per epoch, as the main job's progress bar when not on a terminal
    )
    test_accuracy = history.history["val_accuracy"][-1]
    train_seconds = sum(timer.seconds)
    print(f"training: {' + '.join(f'{s:.1f}' for s in timer.seconds)} s; its first step (graph tracing included) "
          f"{timer.first_step:.2f} s", flush=True)
    print(f'{{"test_accuracy": {test_accuracy:.4f}, "train_seconds": {train_seconds:.1f}, "epochs": {o.epochs}, '
          f'"framework": {json.dumps("tensorflow " + tf.__version__)}}}', flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
