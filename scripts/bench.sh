#!/usr/bin/env bash
# Run every benchmark (one command); each prints a Markdown table and exits 1 when it misses
# its goal. Usage: scripts/bench.sh [NAME...]   (names: bulk_issue help_speed due_query ...)
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh "dev,aws,acme,hsm,postgres,service"
# What the benchmarks run against or compare with (certbot comes from PyPI, in its own venv).
scripts/apt-install.sh openssl pebble lego softhsm2
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  names=()
  for f in bench/*.py; do
    n=$(basename "$f" .py)
    case "$n" in __init__|common) ;; *) names+=("$n") ;; esac
  done
fi
status=0
for n in "${names[@]}"; do
  echo "### $n"
  .venv/bin/python -m "bench.$n" || { echo "(bench $n missed its goal)"; status=1; }
  echo
done
exit $status
