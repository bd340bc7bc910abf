"""Tests for the passive analyzers and the analysis runner, on hand-made flows and small pcaps."""
