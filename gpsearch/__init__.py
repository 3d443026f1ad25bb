"""gpsearch: discover pruning metrics for large language models by genetic programming."""

__version__ = "0.1.0"
