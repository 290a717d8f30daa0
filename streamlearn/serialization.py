"""Safe, deterministic bytes for state dicts: a JSON header plus raw little-endian arrays.

Layout: ``MAGIC``, the header length (8 bytes, little-endian), the JSON header, the array data
in header order, and a CRC-32 of everything before it (4 bytes). The header holds every
non-array value of the (nested) state dict and, for each array, its path, dtype and shape.
Nothing is ever unpickled: only float64/float32/int64 arrays and JSON values can be read back.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib

import numpy as np

__all__ = ["pack", "unpack", "PackTemplate", "SerializationError"]

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


def _head(tree: dict, specs: list) -> str:
    """The JSON header of a split state."""
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
    return f'{{"arrays":{listed},"tree":{text}}}'


def _seal(head: bytes, arrays: list) -> bytes:
    body = b"".join([MAGIC, struct.pack("<Q", len(head)), head, *arrays])  # arrays as buffers
    return body + struct.pack("<I", zlib.crc32(body))


def pack(state: dict) -> bytes:
    """Serialise a state dict of JSON values and float64/float32/int64 numpy arrays."""
    arrays: list = []
    specs: list = []
    tree = _split(state, "", arrays, specs)
    return _seal(_head(tree, specs).encode(), arrays)


class PackTemplate:
    """:func:`pack` of states that differ from one another only in the numbers at
    ``varying`` (paths) and in the values of their arrays, which it keeps as the live
    arrays given: the header is encoded once with placeholders, so packing is filling in
    the numbers and joining the arrays' bytes. ``pack(values)`` takes the numbers in the
    order of ``varying`` and gives exactly the bytes ``pack`` gives for that state."""

    def __init__(self, state: dict, varying: tuple):
        marker = f"\x00{os.urandom(8).hex()}"  # no real value or name holds it
        tree = _replace(state, {path: f"{marker}{i}" for i, path in enumerate(varying)})
        specs: list = []
        text = _head(_split(tree, "", [], specs), specs).replace("%", "%%")
        quoted = [json.dumps(f"{marker}{i}") for i in range(len(varying))]
        if any(text.count(q) != 1 for q in quoted):
            raise ValueError(f"{varying} are not all numbers of the state")
        found = [(text.index(q), i) for i, q in enumerate(quoted)]
        for q in quoted:
            text = text.replace(q, "%s")
        self.order = [i for _, i in sorted(found)]  # the placeholders in the header's order
        self.text = text
        self.live = [array if array.flags.c_contiguous else None for array in
                     _arrays(state)]
        self.views = list(_arrays(state))

    def pack(self, values) -> bytes:
        return self.pack_data(values, [live if live is not None else np.ascontiguousarray(view)
                                       for live, view in zip(self.live, self.views)])

    def pack_data(self, values, arrays: list) -> bytes:
        """``pack(values)``, given the arrays' bytes (buffers, in order, possibly joined)."""
        ordered = tuple([values[i] for i in self.order])
        if not all(map(math.isfinite, ordered)):  # str() of an int or float is its JSON
            raise TypeError(f"state holds a value that is not plain data: {ordered!r:.200}")
        return _seal((self.text % ordered).encode(), arrays)


def _replace(tree: dict, values: dict, prefix: str = "") -> dict:
    """``tree`` with the values at the paths of ``values`` replaced."""
    out = {}
    for key, value in tree.items():
        path = prefix + key
        if isinstance(value, dict):
            out[key] = _replace(value, values, path + "/")
        else:
            out[key] = values.get(path, value)
    return out


def _arrays(tree: dict):
    """The arrays of a state in the order _split lists them."""
    for value in tree.values():
        if isinstance(value, np.ndarray):
            yield value
        elif isinstance(value, dict):
            yield from _arrays(value)


def _join(tree, arrays: dict):
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            path = tree["__array__"]
            if not isinstance(path, str) or path not in arrays:
                raise SerializationError(f"state header refers to an unknown array {path!r:.80}")
            return arrays[path]
        return {k: _join(v, arrays) for k, v in tree.items()}
    return tree


def _spec(spec) -> tuple:
    """(path, dtype, shape) of one entry of the header's array list, checked."""
    if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
        raise SerializationError(f"state header has a malformed array entry {spec!r:.80}")
    path = spec["path"]
    dtype = _DTYPES.get(spec.get("dtype")) if isinstance(spec.get("dtype"), str) else None
    if dtype is None:
        raise SerializationError(f"array {path!r:.80}: unsupported dtype "
                                 f"{spec.get('dtype')!r:.40}")
    shape = spec.get("shape")
    if not isinstance(shape, list) or len(shape) > 8 \
            or any(type(size) is not int or size < 0 for size in shape):
        raise SerializationError(f"array {path!r:.80}: malformed shape {shape!r:.80}")
    return path, dtype, tuple(shape)


def unpack(data: bytes) -> dict:
    """Inverse of :func:`pack`; raises :class:`SerializationError` on any damage. Arrays are
    checked against the bytes present before any is built, so a damaged or hostile header
    costs no more memory than the data itself."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SerializationError(f"state must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < len(MAGIC) + 12 or not data.startswith(MAGIC):
        raise SerializationError("not a streamlearn state (bad magic bytes)")
    body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
    if zlib.crc32(body) != crc:
        raise SerializationError("state is corrupt or truncated (checksum mismatch)")
    (n_head,) = struct.unpack("<Q", body[len(MAGIC): len(MAGIC) + 8])
    start = len(MAGIC) + 8
    if start + n_head > len(body):
        raise SerializationError("state header is truncated")
    try:
        header = json.loads(body[start: start + n_head])
    except (ValueError, RecursionError) as exc:
        raise SerializationError(f"state header is unreadable: {str(exc)[:200]}") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays"), list) \
            or not isinstance(header.get("tree"), dict):
        raise SerializationError("state header must be an object with an 'arrays' list and a "
                                 "'tree' object")
    offset = start + n_head
    arrays = {}
    writable = bytearray(body)  # one copy: the arrays are writable views of it
    for spec in header["arrays"]:
        path, dtype, shape = _spec(spec)
        if path in arrays:
            raise SerializationError(f"array {path!r:.80} is listed twice")
        count = math.prod(shape)
        if offset + count * dtype.itemsize > len(body):
            raise SerializationError(f"array {path!r:.80} is truncated")
        array = np.frombuffer(writable, dtype=dtype, count=count, offset=offset).reshape(shape)
        arrays[path] = array if dtype.isnative else array.astype(dtype.newbyteorder("="))
        offset += count * dtype.itemsize
    if offset != len(body):
        raise SerializationError("state has trailing bytes")
    try:
        return _join(header["tree"], arrays)
    except RecursionError:
        raise SerializationError("state header is nested too deeply") from None
