"""The ``hindsight`` command line: one module per command group, no logic in commands."""
