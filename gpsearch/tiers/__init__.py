"""Progressive three-tier block pruning (seed 004): pure math, the CSV schedule, the runner."""
