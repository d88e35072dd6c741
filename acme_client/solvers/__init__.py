"""ACME challenge solvers (RFC 8555 section 8): HTTP-01 standalone/webroot, DNS-01 hook/Route53."""
