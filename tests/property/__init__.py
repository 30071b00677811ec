"""Property-based tests (Hypothesis): models, fault-schedule search, codec corruption."""
