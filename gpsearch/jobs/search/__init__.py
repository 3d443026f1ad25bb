"""The search application: ``plan`` turns settings into a validated plan (the defaults in one
place, resume rules, the run's config record), ``run`` builds the backend and drives the engine
into a run directory, ``steps`` holds the generations under a progress bar and constant tuning,
``pick`` the robust final pick, ``report`` the summary against the baselines.
"""
