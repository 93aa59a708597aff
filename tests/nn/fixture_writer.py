"""The float64 safetensors writer shared by the make_*_fixtures.py scripts next to this file.

    writer = FixtureWriter("make_x_fixtures.py")
    writer.emit("case.name", tensor)      # stored as F64, contiguous
    writer.write("fixtures/x.safetensors")  # names sorted; __metadata__: generator and torch version
"""
import json
import struct

import torch


class FixtureWriter:
    def __init__(self, generator):
        self.generator = generator
        self.tensors = {}

    def emit(self, name, t):
        self.tensors[name] = torch.as_tensor(t, dtype=torch.float64).detach().contiguous()

    def write(self, path):
        header, offset, blobs = {}, 0, []
        for name in sorted(self.tensors):
            data = self.tensors[name].numpy().tobytes()
            header[name] = {"dtype": "F64", "shape": list(self.tensors[name].shape),
                            "data_offsets": [offset, offset + len(data)]}
            offset += len(data)
            blobs.append(data)
        header["__metadata__"] = {"generator": self.generator, "torch": torch.__version__}
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for b in blobs:
                f.write(b)
