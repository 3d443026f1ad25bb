"""Structured pruning (seed 002): ShortGPT layer removal, H-GSP-style width pruning, SlimGPT
structured OBS. Each makes the model physically smaller (``surgery``)."""
