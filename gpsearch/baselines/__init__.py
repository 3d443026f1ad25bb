"""One-shot pruning baselines: pure tensor math plus one entry function per method."""
