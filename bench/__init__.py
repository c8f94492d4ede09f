"""Benchmarks: speed measured against real servers, as ratios against a raw baseline.

Not tests: they print figures and write ``bench/results/*.json``; they never fail
because a machine is slow. See docs/benchmarks.md.
"""
