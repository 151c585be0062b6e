"""Benchmarks: scripts that measure the service and print their figures."""
