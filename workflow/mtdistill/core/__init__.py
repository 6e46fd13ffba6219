"""The floor every module stands on: io, cli, tokens, metrics, n-best tables and registries."""
