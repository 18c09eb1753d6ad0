"""Claim jobs, run the training child, turn its JSON lines into events, publish the model."""
