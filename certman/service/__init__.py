"""Lifecycle orchestration: issuance, renewal, revocation, export, key rotation."""
