"""The world: platforms, probes, the tunnelbroker client, observers and executors (all the I/O)."""
