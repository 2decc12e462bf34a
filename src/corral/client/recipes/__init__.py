"""corral.client.recipes."""
