"""Fault injection on real servers: kills, outages, refusals."""
