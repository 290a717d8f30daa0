"""The layouts a store's row states name, and the stored states as learners.

A row state (:meth:`LearnerTable.dump`) holds a learner's values alone; what every row of a
layout shares is stored once, as the layout's fresh learner (``StateStore.layout``). To read
a row state, its layout's table is rebuilt from that learner once per process.
"""

from __future__ import annotations

from streamlearn.serialization import SerializationError
from streamlearn.table import LearnerTable, row_layout

from .config import learner_class

__all__ = ["StoredLayouts"]


class StoredLayouts:
    """layout id -> :class:`LearnerTable`: the tables this process writes rows of
    (``add``), and those rebuilt from the store's layouts on first use."""

    def __init__(self, store):
        self.store = store
        self.tables: dict = {}

    def add(self, table: LearnerTable) -> LearnerTable:
        """The table of ``table``'s layout: ``table``, or the one held already."""
        return self.tables.setdefault(table.layout_id, table)

    def table(self, layout_id: bytes) -> LearnerTable:
        """The table of ``layout_id`` (SerializationError if the store cannot give it)."""
        table = self.tables.get(layout_id)
        if table is None:
            state = self.store.layout(layout_id)
            if state is None:
                raise SerializationError(f"layout {layout_id.hex()} is not in the store")
            table = LearnerTable(learner_class(state).from_bytes(state))
            if table.layout_id != layout_id:
                raise SerializationError(f"the stored layout {layout_id.hex()} does not "
                                         "match its id")
            self.tables[layout_id] = table
        return table

    def load(self, state: bytes):
        """(table, row, steps) of a row state, or None if ``state`` is a learner's
        ``to_bytes()``; SerializationError if it cannot be read back."""
        layout = row_layout(state)
        if layout is None:
            return None
        table = self.table(layout)
        return (table, *table.load(state))

    def learner_bytes(self, state: bytes) -> bytes:
        """The learner's ``to_bytes()`` of a stored state (checked; SerializationError if it
        cannot be read back)."""
        loaded = self.load(state)
        if loaded is None:
            learner_class(state).from_bytes(state)
            return state
        table, row, steps = loaded
        return table.pack(row, steps)
