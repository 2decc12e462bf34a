"""corral.replica."""
