"""corral.sim: deterministic simulation of whole clusters from one seed (simulation.py)."""
