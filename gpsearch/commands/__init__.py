"""One module per ``gpsearch`` subcommand: ``add_arguments(parser)`` and ``run(args)``."""
