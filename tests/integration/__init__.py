"""Integration tests against real servers started on 127.0.0.1 by fixtures."""
