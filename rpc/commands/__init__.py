"""The ``vision-pipeline`` subcommands, one module per group; each has ``register(sub)``."""
