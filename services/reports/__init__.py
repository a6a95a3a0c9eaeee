"""Statewide comparisons from pseudonymised events: a streaming tally and published snapshots."""
