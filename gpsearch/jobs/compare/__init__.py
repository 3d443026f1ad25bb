"""``gpsearch compare``: methods and metric trees under one calibration configuration, scored on
the test split. ``run`` (the flow), ``methods`` (schedules and structured rows), ``update``
(weight-update rows), ``allocation`` (allocation rows), ``include`` (rows of earlier runs),
``report`` (table and plots), ``method`` (the Method record, list parsing) and ``registry``
(the methods known by name, resolution of a ``--methods`` item).
"""
