"""Structured pruning baselines (seed 002): ShortGPT layer removal, H-GSP-style width pruning,
SlimGPT structured OBS. Each makes the model physically smaller (see ``surgery``)."""
