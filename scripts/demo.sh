#!/usr/bin/env bash
# The main job on the embedded defaults: a fresh home, the private CA, one certificate, its expiry.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh ""
# init creates the home itself (0700) inside a fresh temporary directory.
home="${CERTMAN_DEMO_HOME:-$(mktemp -d -t certman-demo.XXXXXX)/home}"
certman=".venv/bin/certman --home $home"
echo "== certman home: $home"
$certman init
$certman issue demo-web --domain www.example.com --domain example.com --validity 90d
$certman list
echo "== doctor"
$certman doctor
