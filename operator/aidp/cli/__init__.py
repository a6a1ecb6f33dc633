"""The `aidp` command line."""
