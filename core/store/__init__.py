"""The label store: one SQLite database per workspace, on sqlite-utils.

``from core.store import Store`` is all most code needs. Inside, one concept per module:

* ``schema``   - the tables, their migrations, and which columns hold JSON (decoded here, once);
* ``database`` - the connection: WAL, ``BEGIN IMMEDIATE`` transactions, savepoints, queries;
* ``history``  - the change log: logged writes with revisions, undo, redo, deltas, audit trail;
* ``jobs``     - the jobs table and the workspace's settings;
* ``store``    - :class:`Store`: games, labels, model versions, predictions and their review,
  bulk import; built on the two above (``Store(History, Jobs)``).
"""
from core.store.database import now
from core.store.history import UNDOABLE
from core.store.schema import MIGRATIONS, SCHEMA_VERSION
from core.store.store import GameImport, ImportResult, Store

__all__ = ["Store", "GameImport", "ImportResult", "SCHEMA_VERSION", "MIGRATIONS", "UNDOABLE", "now"]
