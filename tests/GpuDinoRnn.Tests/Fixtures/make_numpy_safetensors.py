#!/usr/bin/env python3
"""Writes safetensors fixtures with plain numpy (not the safetensors package), so the C# reader is
tested against another writer's choices: keys not sorted, a header padded with spaces, F64 data,
and (second file) F32 data whose offsets are not in header order.

Values: tensor t with n elements holds v[i] = 0.01 * (i + 1) * (-1)**i + k / 8, where k is the
tensor's position in TENSORS (0..4); the C# test recomputes them independently.

Run: /usr/bin/python3 make_numpy_safetensors.py   (writes next to this script)
"""
import json
import os
import struct

import numpy as np

TENSORS = [("Wax", (4, 5)), ("Waa", (4, 4)), ("Wya", (5, 4)), ("b", (4,)), ("by", (5,))]
METADATA = {"vocab": "\nabcd", "hidden": "4", "cell": "rnn"}


def values(k, shape):
    i = np.arange(int(np.prod(shape)), dtype=np.float64)
    return (0.01 * (i + 1) * (-1.0) ** i + k / 8).reshape(shape)


def write(path, dtype, tag, order, header_order):
    """order: the order of the data in the file; header_order: the order of the keys in the JSON."""
    arrays = {name: values(k, shape).astype(dtype) for k, (name, shape) in enumerate(TENSORS)}
    entries, chunks, offset = {}, [], 0
    for name in order:
        raw = arrays[name].astype(dtype.newbyteorder("<")).tobytes(order="C")
        entries[name] = {"shape": list(arrays[name].shape), "data_offsets": [offset, offset + len(raw)], "dtype": tag}
        chunks.append(raw)
        offset += len(raw)
    header = {name: entries[name] for name in header_order}
    header["__metadata__"] = METADATA  # last, not first: readers must not depend on key order
    text = json.dumps(header, indent=1).encode("utf-8")  # newlines and spaces are fine JSON
    text += b" " * (8 - len(text) % 8 + 5)  # padded, and deliberately not to a multiple of 8
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(b"".join(chunks))


here = os.path.dirname(os.path.abspath(__file__))
names = [name for name, _ in TENSORS]
write(os.path.join(here, "numpy_written.safetensors"), np.dtype(np.float64), "F64",
      order=names, header_order=["b", "Wya", "Wax", "by", "Waa"])
write(os.path.join(here, "numpy_unordered_f32.safetensors"), np.dtype(np.float32), "F32",
      order=["by", "Wax", "b", "Waa", "Wya"], header_order=["Waa", "Wax", "by", "Wya", "b"])
