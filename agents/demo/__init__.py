"""The demo: the whole system end to end on embedded defaults (demo backends)."""
