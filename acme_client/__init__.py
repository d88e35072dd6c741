"""The ACME issuer (RFC 8555) on acme + josepy: accounts, orders, solvers, ARI, revocation."""
