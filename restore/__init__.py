"""Restore: point-in-time recovery from the nearest snapshot plus replay of later events.

A *restore point* is a moment (to the second) or a sequence number; a *plan* names the
snapshot and event range that rebuild it. Imports ``journal`` and ``compaction``.
"""

__all__: list[str] = []
