"""Benchmarks (not tests): `make bench`. A package so that the tests can reuse its timer."""
