"""corral.consensus."""
