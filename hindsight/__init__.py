"""The shell that wires the packages: config, CLI, daemon."""
