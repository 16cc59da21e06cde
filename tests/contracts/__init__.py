"""Contract suites: one per protocol, run against every backend through a factory fixture."""
