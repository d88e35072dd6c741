"""The inventory: every certificate, revision, CA and audit event, in one database."""
