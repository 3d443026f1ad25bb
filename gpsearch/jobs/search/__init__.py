"""The search application: ``run`` plans a search (model, features, backend, run directory) and
drives the engine, ``steps`` holds the generations under a progress bar and constant tuning,
``pick`` the robust final pick, ``report`` the summary against the baselines.
"""
