"""corral.protocol."""
