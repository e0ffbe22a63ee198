"""The root's query ops as units, one module per family, served from one table.

``base`` has what every op is made of (``Op``, ``OpTable``, ``QueryError``, ``arg``)
and the roles; ``live``, ``stored``, ``reads``, ``masks`` and ``admin`` hold the ops.
The query socket (``root/server.py``) and any other front serve the same table.
"""

from clumon.root.ops.base import ADMIN, OPERATOR, READER, ROLES, Op, OpTable, QueryError, arg, time_arg

__all__ = ["ADMIN", "OPERATOR", "READER", "ROLES", "Op", "OpTable", "QueryError", "arg", "time_arg"]
