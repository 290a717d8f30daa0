"""Many learners of one layout as rows of bytes, stepped by one worker learner.

A service keeps a learner per key. As an object, a default learner costs about 60 KB (its
arrays plus a kernel of typed memoryviews and scratch), and building one (``spawn``, then
its kernel at its first event) costs far more than copying its state. A
:class:`LearnerTable` holds the learners that share a configuration and feature names (a
*layout*) as rows: the bytes of their learned arrays, laid out as the kernel reads them
(:meth:`ColumnarNetwork.in_arena`). One worker learner, whose learned arrays all live in
one buffer, steps whichever row is loaded: loading is one copy into that buffer plus
``kernel.reload()``, which recomputes what the kernel derives from the state.

A row is the state the worker's learner would have: the worker steps it with the same
code as any learner, and :meth:`LearnerTable.pack` gives exactly the learner's
``to_bytes()``. :meth:`LearnerTable.read` reads such bytes of this layout back into a row
with every check of ``from_bytes`` (a damaged or hostile blob raises
SerializationError), but without parsing the JSON header: it must be the layout's own,
with only the step count and the scalars differing.

A store need not repeat what every row of a layout shares. :meth:`LearnerTable.dump` gives a
*row state*: ``ROW_MAGIC``, the layout's id (the first 8 bytes of the SHA-256 of
``layout_state``, a fresh learner's ``to_bytes()``), the step count (``<Q``), the row's
state values in a fixed order (``<f8``) and a CRC-32 of everything before it (``<I``).
Nothing the kernel derives, no structure and no header: 11,348 bytes for the default
model instead of 14,694. :meth:`LearnerTable.load` reads it back with the same checks; the
layout's table is rebuilt from ``layout_state`` (``LearnerTable(cls.from_bytes(...))``).
"""

from __future__ import annotations

import hashlib
import itertools
import operator
import re
import struct
import zlib

import numpy as np

from streamlearn.network import COUNTS, SCALARS, STRUCTURE, check_counts, entry_checks
from streamlearn.serialization import MAGIC, SerializationError

__all__ = ["LearnerTable", "layout_of", "row_layout", "ROW_MAGIC"]

ROW_MAGIC = b"STREAMLEARN-ROW\x01"
_ROW_HEAD = struct.Struct(f"<{len(ROW_MAGIC)}s8sQ")  # magic, layout id, steps
_CRC = struct.Struct("<I")

# a JSON number as serialization writes it (json.dumps of an int or a finite float)
_NUMBER = rb"(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"


def layout_of(learner) -> tuple | None:
    """What learners must share to be rows of one table (configuration and feature
    names), or None for a learner no table holds (a stage schedule changes its structure
    as it learns, a classifier's head grows with the classes it sees)."""
    net = getattr(learner, "_net", None)
    if net is None or net.config.columns_per_stage or net.config.rule == "classification":
        return None
    return type(learner), net.config, tuple(net.names)


def row_layout(data) -> bytes | None:
    """The layout id a row state names, or None if ``data`` is not a row state."""
    if type(data) is not bytes or len(data) < _ROW_HEAD.size or not data.startswith(ROW_MAGIC):
        return None
    return _ROW_HEAD.unpack_from(data)[1]


class LearnerTable:
    """Rows (``bytearray``) of the learners of ``layout_of(fresh)``; ``fresh`` (a learner
    of that layout that has learned nothing) gives the state of a new row."""

    def __init__(self, fresh):
        self.layout = layout_of(fresh)
        if self.layout is None:
            raise ValueError("a learner with a stage schedule cannot be a table row")
        # what rebuilds this table, and its id in row states
        self.layout_state = fresh.to_bytes()
        self.layout_id = hashlib.sha256(self.layout_state).digest()[:8]
        self.net, arena = fresh._net.in_arena()
        self.worker = self._blank(fresh)
        self._arena = arena
        self._bytes = memoryview(arena)
        self._fresh = bytes(arena)
        self._loaded = None   # the row the worker holds (newer than the row's bytes)
        self._stale = False   # the kernel has not taken up the loaded row yet
        self._reader = None   # built on first read

    def new_row(self) -> bytearray:
        return bytearray(self._fresh)

    def use(self, row: bytearray, steps: int, kernel: bool = True):
        """The worker, holding ``row`` at ``steps`` steps (the row held before is saved into
        its bytes first). ``kernel=False`` for reading only: the kernel takes the row up
        at the next use that steps."""
        if self._loaded is not row:
            if self._loaded is not None:
                self._loaded[:] = self._bytes
            self._bytes[:] = row
            self._loaded, self._stale = row, True
            self.worker._net = self.net  # forgets what it grew from the row held before
        self.worker._steps = steps
        if kernel and self._stale:
            self.net.kernel.reload()
            self._stale = False
        return self.worker

    def left(self) -> bool:
        """Whether the worker's last step left the layout (it grew new features): its
        learner is then ``worker``'s network, and the row it came from is out of date."""
        return self.worker._net is not self.net

    def drop(self, row: bytearray) -> None:
        """Forget ``row`` (evicted, reset or moved to another table)."""
        if self._loaded is row:
            self._loaded = None

    def detach(self):
        """A standalone learner holding the worker's state (after it left the layout); the
        worker returns to the layout with no row loaded."""
        learner, self._loaded = self.worker, None
        self.worker = self._blank(learner)
        return learner

    def _blank(self, learner):
        """A learner with the parameters of ``learner`` on the table's network."""
        return learner._on(self.net)

    def adopt(self, learner) -> bytearray:
        """A new row holding the state of ``learner`` (of this layout and structure)."""
        arrays = learner._net.arrays
        for key in STRUCTURE:
            if not np.array_equal(arrays[key], self.net.arrays[key]):
                raise ValueError(f"the learner's {key} differs from the table's")
        if self._loaded is not None:
            self._loaded[:] = self._bytes
            self._loaded = None
        for key, value in self.net.arrays.items():
            if key not in STRUCTURE:
                value[...] = arrays[key]
        return bytearray(self._bytes)

    def pack(self, row: bytearray, steps: int) -> bytes:
        """The learner's ``to_bytes()``."""
        codec = self._codec()
        if not codec.plan:
            return self.use(row, steps, kernel=False).to_bytes()
        return codec.pack(self._bytes if self._loaded is row else row, steps)

    def read(self, data: bytes):
        """(row, steps) of ``to_bytes()`` output of a learner of this layout, checked as
        ``from_bytes`` checks it; None when ``data`` is not of this layout (or not
        readable without parsing: ``from_bytes`` then reads it or says what is wrong)."""
        return self._codec().read(data)

    def dump(self, row: bytearray, steps: int) -> bytes:
        """The row state of ``row`` (the learner's ``to_bytes()`` where the layout has no
        row states: float32)."""
        codec = self._codec()
        if not codec.plan:
            return self.pack(row, steps)
        return codec.dump(self._bytes if self._loaded is row else row, steps)

    def load(self, data: bytes):
        """(row, steps) of a row state of this layout, checked as ``from_bytes`` checks a
        state (SerializationError, naming what is wrong, if a check fails)."""
        return self._codec().load(data)

    def _codec(self):
        if self._reader is None:
            self._reader = _Codec(self)
        return self._reader


class _Codec:
    """A table's layout to and from bytes by fancy indexes between a row and the arrays'
    bytes in a state's order. Reading, the header must be the layout's, numbers aside, and
    the values are checked group by group (the bounds of ``entry_checks``) on the way."""

    def __init__(self, table: LearnerTable):
        self.plan = False
        worker = table.worker
        self.layout_id = table.layout_id
        worker.to_bytes()  # builds the pack template
        _, template, scalar_index = worker._packer
        self.fresh = table._fresh
        parts = template.text.split("%s")
        self.pattern = re.compile(_NUMBER.join(re.escape(part.replace("%%", "%").encode())
                                               for part in parts), re.DOTALL)
        self.order = template.order   # placeholder -> index into (steps, *scalars)
        config = table.net.config
        checks = {key: (bounds, whole) for _, key, _, bounds, whole in entry_checks(config)}
        self.scalar_checks = [checks[SCALARS[i]] for i in scalar_index]
        arena, arrays = table._arena, table.net.arrays
        if config.dtype != "float64" or len(arena) % 8:
            return
        shadow = np.arange(len(arena) // 8, dtype=np.int64)

        def index(view):  # the row's float64 positions of an arena array's elements
            offset = (view.ctypes.data - arena.ctypes.data) // 8
            return np.lib.stride_tricks.as_strided(
                shadow[offset:], shape=view.shape, strides=view.strides).ravel()

        views = {id(value): key for key, value in arrays.items()}
        groups, self.fixed, position = {}, [], 0
        for view in template.views:
            key = views.get(id(view))
            if view.dtype.itemsize != 8 or key is None:
                return
            if key in STRUCTURE:
                self.fixed.append((8 * position, view.astype("<i8").tobytes()))
            else:
                groups.setdefault(checks[key], []).append(
                    (np.arange(position, position + view.size), index(view)))
            position += view.size
        self.items = position
        starts, checks, src, dst = [], [], [], []
        for check, pairs in groups.items():
            if sum(len(s) for s, _ in pairs):
                starts.append(sum(map(len, src)))
                checks.append(check)
                src.extend(s for s, _ in pairs)
                dst.extend(d for _, d in pairs)
        self.src, self.dst = np.concatenate(src), np.concatenate(dst)
        # packing: one gather from the row's floats followed by the structure's values
        order = np.empty(position, np.int64)
        order[self.src] = self.dst
        self.ext = np.empty(len(shadow) + sum(len(b) // 8 for _, b in self.fixed))
        tail = len(shadow)
        for offset, expected in self.fixed:
            size = len(expected) // 8
            order[offset // 8: offset // 8 + size] = np.arange(tail, tail + size)
            self.ext[tail:tail + size] = np.frombuffer(expected, np.float64)
            tail += size
        self.order_all, self.out = order, np.empty(position)
        self.template = template
        self.values = np.empty(len(self.src) + len(scalar_index))
        self.starts = np.array(starts)
        self.low = [low for (low, _), _ in checks]
        self.high = [high for (_, high), _ in checks]
        self.whole = [(start, start + size) for start, size, (_, whole) in zip(
            starts, np.diff(starts + [len(self.src)]), checks) if whole]
        self.scalars = index(arrays["scalars"])[scalar_index]
        # row states: the values in check-group order, then the scalars
        self.gather = np.concatenate([self.dst, self.scalars])
        # where check_counts finds its entries among the gathered values: one take, then
        # each key's slice of it
        place = {position: i for i, position in enumerate(self.gather.tolist())}
        spots = {key: [place[p] for p in index(arrays[key] if key in arrays else
                                               arrays["scalars"][SCALARS.index(key):][:1]).tolist()]
                 for key in itertools.chain(*COUNTS)}
        self.count_index = np.array(list(itertools.chain(*spots.values())), np.int64)
        ends = np.cumsum([len(where) for where in spots.values()]).tolist()
        self.count_slices = [(key, end - len(where), end)
                             for (key, where), end in zip(spots.items(), ends)]
        self.row_size = _ROW_HEAD.size + 8 * len(self.gather) + _CRC.size
        self.plan = True

    def pack(self, row, steps: int) -> bytes:
        floats = np.frombuffer(row, np.float64)
        self.ext[:len(floats)] = floats
        np.take(self.ext, self.order_all, out=self.out)
        return self.template.pack_data([steps, *floats[self.scalars].tolist()], [self.out])

    def read(self, data: bytes):
        if not self.plan or type(data) is not bytes or not data.startswith(MAGIC) \
                or len(data) < len(MAGIC) + 12:
            return None
        start = len(MAGIC) + 8
        body = start + struct.unpack_from("<Q", data, len(MAGIC))[0]
        if len(data) != body + 8 * self.items + 4:
            return None
        match = self.pattern.fullmatch(data, start, body)
        if match is None:
            return None
        if zlib.crc32(memoryview(data)[:-4]) != struct.unpack_from("<I", data, len(data) - 4)[0]:
            raise SerializationError("state is corrupt or truncated (checksum mismatch)")
        numbers = [None] * len(self.order)
        for number, index in zip(match.groups(), self.order):
            numbers[index] = number
        try:
            steps = int(numbers[0])
            scalars = [float(number) for number in numbers[1:]]
        except ValueError:
            return None  # not an int: from_bytes says what is wrong
        if not 0 <= steps < 2**62:
            return None
        for offset, expected in self.fixed:
            if data[body + offset: body + offset + len(expected)] != expected:
                return None
        gathered = self.values
        np.take(np.frombuffer(data, "<f8", count=self.items, offset=body), self.src,
                out=gathered[:len(self.src)])
        gathered[len(self.src):] = scalars
        if self._why_invalid(gathered):
            return None  # from_bytes says what is wrong
        row = bytearray(self.fresh)
        np.frombuffer(row, np.float64)[self.gather] = gathered
        return row, steps

    def _why_invalid(self, gathered) -> str | None:
        """What breaks a bound of ``entry_checks`` or ``check_counts``, if anything, among
        the ``gathered`` values (in ``gather`` order)."""
        values, scalars = gathered[:len(self.src)], gathered[len(self.src):].tolist()
        if not all(low <= value <= high and (not whole or value == int(value))
                   for value, ((low, high), whole) in zip(scalars, self.scalar_checks)):
            return "a scalar lies outside its bounds"
        # NaN fails both comparisons
        if not (all(map(operator.ge, np.minimum.reduceat(values, self.starts).tolist(), self.low))
                and all(map(operator.le, np.maximum.reduceat(values, self.starts).tolist(),
                            self.high))):
            return "a value is not finite or lies outside its bounds"
        if not all(value.is_integer() for a, b in self.whole for value in values[a:b].tolist()):
            return "a count is not a whole number"
        try:
            counts = gathered.take(self.count_index).tolist()
            check_counts({key: counts[a:b] for key, a, b in self.count_slices})
        except SerializationError as exc:
            return str(exc)
        return None

    def dump(self, row, steps: int) -> bytes:
        head = _ROW_HEAD.pack(ROW_MAGIC, self.layout_id, steps)
        body = head + np.take(np.frombuffer(row, np.float64), self.gather).tobytes()
        return body + _CRC.pack(zlib.crc32(body))

    def load(self, data: bytes):
        if type(data) is not bytes or len(data) != self.row_size \
                or row_layout(data) != self.layout_id:
            raise SerializationError(f"not a row state of layout {self.layout_id.hex()} "
                                     f"({self.row_size} bytes)")
        if zlib.crc32(memoryview(data)[:-_CRC.size]) != _CRC.unpack_from(data, len(data) - 4)[0]:
            raise SerializationError("state is corrupt or truncated (checksum mismatch)")
        steps = _ROW_HEAD.unpack_from(data)[2]
        gathered = np.frombuffer(data, "<f8", count=len(self.gather), offset=_ROW_HEAD.size)
        why = "the step count is out of range" if steps >= 2**62 \
            else self._why_invalid(gathered)
        if why is not None:
            raise SerializationError(f"row state of layout {self.layout_id.hex()}: {why}")
        row = bytearray(self.fresh)
        np.frombuffer(row, np.float64)[self.gather] = gathered
        return row, steps
