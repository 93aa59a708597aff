"""Checks tessera's ONNX exports with the real onnx package and ONNX Runtime.

    onnx_check.py DIR     (DIR: what test_io_onnx wrote with TESSERA_ONNX_DIR set)

For every case in DIR/cases.json: onnx.checker.check_model(full_check=True) passes, and ONNX
Runtime's output on the saved input equals tessera's saved output within 1e-5 (absolute, or
relative for large values). Exit status 1 on any failure.
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    directory = sys.argv[1]
    cases = json.load(open(os.path.join(directory, "cases.json")))
    failures = 0
    checked = set()
    for case in cases:
        path = os.path.join(directory, case["model"])
        if path not in checked:
            onnx.checker.check_model(onnx.load(path), full_check=True)
            checked.add(path)
            print(f"ok    {case['model']}: onnx checker (full_check)")
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        dtypes = {"float32": np.float32, "float64": np.float64, "int64": np.int64}
        x = np.fromfile(case["input"], dtype=dtypes[case["input_dtype"]]).reshape(case["input_shape"])
        expected = np.fromfile(case["output"], dtype=dtypes[case["output_dtype"]]).reshape(case["output_shape"])
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
        worst = float(np.max(np.abs(got - expected) / np.maximum(1.0, np.abs(expected)))) if got.shape == expected.shape else float("inf")
        ok = got.shape == expected.shape and worst <= 1e-5
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'}  {case['model']} batch {x.shape[0]}: ONNX Runtime vs tessera, "
              f"shape {list(got.shape)}, largest difference {worst:.2e}")
    print(f"{len(cases) - failures} of {len(cases)} cases agree")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
