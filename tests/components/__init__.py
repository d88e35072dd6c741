"""Real components started by the tests (Pebble, moto server)."""
