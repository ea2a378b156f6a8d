"""Layer 6, reporting: the leaderboard and plots regenerated from committed run records.

Imports `core.records` (reading records) and below; never the CLI.
"""
