"""Metadata adversary: relay correlation, defences and what they cost."""
