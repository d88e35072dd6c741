#!/usr/bin/env bash
# Set up and run the whole test suite: venv, system packages the tests need, lint, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh "dev,aws,acme,hsm,postgres,service"
scripts/apt-install.sh openssl pebble nginx postgresql softhsm2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Every real component is required here: a missing one fails the run instead of skipping.
export CERTMAN_TEST_REQUIRE_COMPONENTS=1
# pytest exits non-zero on any failure and with 5 when it collected nothing.
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
