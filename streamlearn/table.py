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
"""

from __future__ import annotations

import itertools
import operator
import re
import struct
import zlib

import numpy as np

from streamlearn.network import COUNTS, SCALARS, STRUCTURE, check_counts, entry_checks
from streamlearn.serialization import MAGIC, SerializationError

__all__ = ["LearnerTable", "layout_of"]

# a JSON number as serialization writes it (json.dumps of an int or a finite float)
_NUMBER = rb"(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"


def layout_of(learner) -> tuple | None:
    """What learners must share to be rows of one table (configuration and feature
    names), or None for a learner no table holds (a stage schedule changes its structure
    as it learns)."""
    net = getattr(learner, "_net", None)
    if net is None or net.config.columns_per_stage:
        return None
    return type(learner), net.config, tuple(net.names)


class LearnerTable:
    """Rows (``bytearray``) of the learners of ``layout_of(fresh)``; ``fresh`` (a learner
    of that layout that has learned nothing) gives the state of a new row."""

    def __init__(self, fresh):
        self.layout = layout_of(fresh)
        if self.layout is None:
            raise ValueError("a learner with a stage schedule cannot be a table row")
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
            self.worker._grown = None  # grown from the row held before
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
        worker = type(learner).__new__(type(learner))
        for name in learner.PARAMS:
            setattr(worker, name, getattr(learner, name))
        worker._adopt(self.net, 0)
        return worker

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
        self.values = np.empty(len(self.src))
        self.starts = np.array(starts)
        self.low = [low for (low, _), _ in checks]
        self.high = [high for (_, high), _ in checks]
        self.whole = [(start, start + size) for start, size, (_, whole) in zip(
            starts, np.diff(starts + [len(self.src)]), checks) if whole]
        self.scalars = index(arrays["scalars"])[scalar_index]
        # where check_counts finds its entries: in the gathered values, or the scalars
        place = {position: i for i, position in enumerate(self.dst.tolist())}
        self.counts = [(key, [place[p] for p in index(arrays[key]).tolist()])
                       if key in arrays else (key, scalar_index.index(SCALARS.index(key)))
                       for key in itertools.chain(*COUNTS)]
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
        if not 0 <= steps < 2**62 or not all(
                low <= value <= high and (not whole or value == int(value))
                for value, ((low, high), whole) in zip(scalars, self.scalar_checks)):
            return None
        for offset, expected in self.fixed:
            if data[body + offset: body + offset + len(expected)] != expected:
                return None
        values = np.take(np.frombuffer(data, "<f8", count=self.items, offset=body), self.src,
                         out=self.values)
        # NaN fails both comparisons
        if not (all(map(operator.ge, np.minimum.reduceat(values, self.starts).tolist(), self.low))
                and all(map(operator.le, np.maximum.reduceat(values, self.starts).tolist(),
                            self.high))):
            return None
        if not all(value.is_integer() for a, b in self.whole for value in values[a:b].tolist()):
            return None
        try:
            check_counts({key: values[where].tolist() if type(where) is list
                          else scalars[where] for key, where in self.counts})
        except SerializationError:
            return None
        row = bytearray(self.fresh)
        floats = np.frombuffer(row, np.float64)
        floats[self.dst] = values
        floats[self.scalars] = scalars
        return row, steps
