"""One module per CLI command, each with `run(args, env) -> int`."""
