"""Tests for scenario files: schema, loading and validation."""
