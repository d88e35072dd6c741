"""Deployment: rolling a revision out to its targets, verified and reversible."""
