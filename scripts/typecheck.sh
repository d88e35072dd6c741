#!/usr/bin/env bash
# mypy over the package as it installs: ca/, acme_client/ and scheduler/ are the modules
# certman.ca, certman.acme_client and certman.scheduler (setuptools package-dir), which mypy
# cannot map by itself, so it checks a tree of links laid out as the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
tree="build/typecheck"
rm -rf "$tree"
mkdir -p "$tree/certman"
for entry in certman/*; do
  ln -s "$root/$entry" "$tree/certman/$(basename "$entry")"
done
for package in ca acme_client scheduler; do
  ln -s "$root/$package" "$tree/certman/$package"
done
cd "$tree"
exec "$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" "$@"
