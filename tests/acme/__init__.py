"""ACME issuer tests against a real Pebble and pebble-challtestsrv."""
