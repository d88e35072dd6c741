"""The renewal service: reconcile ticks on APScheduler, claims, notices, health, simulation."""
