"""Capture: sources that turn changes into journal events.

Each source (filesystem watcher and scans, MongoDB change streams) emits ``ChangeEvent``s to
an ``EventSink`` and resumes from a position it is given. Imports only ``journal``.
"""

__all__: list[str] = []
