"""Tests of restore/."""
