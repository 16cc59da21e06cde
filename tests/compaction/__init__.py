"""Tests of the compaction package."""
