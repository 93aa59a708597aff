#!/usr/bin/env python3
"""Prints a TensorFlow Serving predict request holding the first N Fashion-MNIST test images.

    scripts/fashion_request.py [N] > request.json      # the images' labels go to stderr
    curl -d @request.json localhost:8501/v1/models/fashion:predict

Each image is [1, 28, 28] (the served CNN's input, pixels in [0, 1]). Reads Debian's
dataset-fashion-mnist package (DATA overrides the directory); standard library only.
"""
import gzip
import json
import os
import sys

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    data = os.environ.get("DATA", "/usr/share/datasets/fashion-mnist")
    with gzip.open(os.path.join(data, "t10k-images-idx3-ubyte.gz")) as f:
        images = f.read()[16:]
    with gzip.open(os.path.join(data, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = f.read()[8:]
    instances = []
    for k in range(n):
        pixels = images[k * 784:(k + 1) * 784]
        instances.append([[[round(pixels[r * 28 + c] / 255.0, 4) for c in range(28)] for r in range(28)]])
        print(f"image {k}: label {labels[k]} ({CLASSES[labels[k]]})", file=sys.stderr)
    json.dump({"instances": instances}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
