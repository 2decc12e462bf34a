"""corral.tree."""
