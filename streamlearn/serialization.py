"""Safe, deterministic bytes for state dicts: a JSON header plus raw little-endian arrays.

Layout: ``MAGIC``, the header length (8 bytes, little-endian), the JSON header, the array data
in header order, and a CRC-32 of everything before it (4 bytes). The header holds every
non-array value of the (nested) state dict and, for each array, its path, dtype and shape.
Nothing is ever unpickled: only float64/float32/int64 arrays and JSON values can be read back.
"""

from __future__ import annotations

import json
import math
import struct
import zlib

import numpy as np

__all__ = ["pack", "unpack", "SerializationError"]

MAGIC = b"STREAMLEARN\x01"
_DTYPES = {"<f8": np.dtype("<f8"), "<f4": np.dtype("<f4"), "<i8": np.dtype("<i8")}


class SerializationError(ValueError):
    """Bytes that are not a valid, intact streamlearn state."""


_CODES = {dtype: code for code, dtype in _DTYPES.items()}  # dtype -> code, found by hash
# JSON of the header's array list by (path, dtype, shape) of every array: a service packs
# thousands of learners of the same shapes, and encoding the list was a quarter of pack().
_SPECS_JSON: dict = {}
_SPECS_JSON_MAX = 64


def _split(tree: dict, prefix: str, arrays: list, specs: list) -> dict:
    """Return ``tree`` with each numpy array replaced by a reference, collecting the arrays
    (C-contiguous, little-endian) and their (path, dtype code, shape)."""
    out = {}
    for key, value in tree.items():
        if type(key) is not str or "/" in key:
            raise TypeError(f"state keys must be strings without '/', got {key!r}")
        if isinstance(value, np.ndarray):
            path = prefix + key
            code = _CODES.get(value.dtype)
            if code is None:  # e.g. big-endian: store little-endian
                value = value.astype(value.dtype.newbyteorder("<"))
                code = _CODES.get(value.dtype)
                if code is None:
                    raise TypeError(f"{path}: only float64, float32 and int64 arrays are stored, "
                                    f"got {value.dtype}")
            arrays.append(value if value.flags.c_contiguous else np.ascontiguousarray(value))
            specs.append((path, code, value.shape))
            out[key] = {"__array__": path}
        elif isinstance(value, dict):
            out[key] = _split(value, f"{prefix}{key}/", arrays, specs)
        else:
            out[key] = value
    return out


def _dumps(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def pack(state: dict) -> bytes:
    """Serialise a state dict of JSON values and float64/float32/int64 numpy arrays."""
    arrays: list = []
    specs: list = []
    tree = _split(state, "", arrays, specs)
    key = tuple(specs)
    listed = _SPECS_JSON.get(key)
    if listed is None:
        listed = _dumps([{"path": p, "dtype": c, "shape": list(s)} for p, c, s in specs])
        if len(_SPECS_JSON) >= _SPECS_JSON_MAX:
            _SPECS_JSON.clear()
        _SPECS_JSON[key] = listed
    try:
        text = _dumps(tree)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"state holds a value that is not plain data: {exc}") from None
    # the same bytes as _dumps({"arrays": ..., "tree": ...}): keys sorted, no spaces
    head = f'{{"arrays":{listed},"tree":{text}}}'.encode()
    body = b"".join([MAGIC, struct.pack("<Q", len(head)), head, *arrays])  # arrays as buffers
    return body + struct.pack("<I", zlib.crc32(body))


def _join(tree, arrays: dict):
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]]
        return {k: _join(v, arrays) for k, v in tree.items()}
    return tree


def unpack(data: bytes) -> dict:
    """Inverse of :func:`pack`; raises :class:`SerializationError` on any damage."""
    data = bytes(data)
    if len(data) < len(MAGIC) + 12 or not data.startswith(MAGIC):
        raise SerializationError("not a streamlearn state (bad magic bytes)")
    body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
    if zlib.crc32(body) != crc:
        raise SerializationError("state is corrupt or truncated (checksum mismatch)")
    (n_head,) = struct.unpack("<Q", body[len(MAGIC): len(MAGIC) + 8])
    start = len(MAGIC) + 8
    try:
        header = json.loads(body[start: start + n_head])
        specs = header["arrays"]
        tree = header["tree"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SerializationError(f"state header is unreadable: {exc}") from None
    offset = start + n_head
    arrays = {}
    writable = bytearray(body)  # one copy: the arrays are writable views of it
    for spec in specs:
        dtype = _DTYPES.get(spec.get("dtype"))
        if dtype is None:
            raise SerializationError(f"unsupported dtype {spec.get('dtype')!r}")
        shape = tuple(int(s) for s in spec["shape"])
        if any(s < 0 for s in shape):
            raise SerializationError(f"negative shape {shape}")
        count = math.prod(shape)
        if offset + count * dtype.itemsize > len(body):
            raise SerializationError("state is truncated")
        array = np.frombuffer(writable, dtype=dtype, count=count, offset=offset).reshape(shape)
        arrays[spec["path"]] = array if dtype.isnative else array.astype(dtype.newbyteorder("="))
        offset += count * dtype.itemsize
    if offset != len(body):
        raise SerializationError("state has trailing bytes")
    return _join(tree, arrays)
