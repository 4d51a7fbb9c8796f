#!/usr/bin/env bash
# The two commands of the quick start:
#   ./dev.sh up     install into .venv (first time) and start itilflow with demo data
#   ./dev.sh test   install what the tests need (Debian packages too) and run the suite, on
#                   every core (at most 4; ITILFLOW_TEST_WORKERS=N says how many, 0 none)
set -euo pipefail
cd "$(dirname "$0")"
venv=${ITILFLOW_VENV:-.venv}
# Every package at the version CI passed with (scripts/lock regenerates it; scripts/check-newest
# tries the newest versions pyproject.toml allows).
constraints=requirements/constraints.txt

# The test tools, and the PostgreSQL driver (the tests run a set on PostgreSQL too).
extras="test,postgres"

ensure_venv() {
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  # Reinstall only when the project's dependencies, the lock (or the extras wanted) changed.
  stamp="$venv/.itilflow-installed-${extras//,/-}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$constraints" -nt "$stamp" ]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check -c "$constraints" -e ".[$extras]"
    touch "$stamp"
  fi
}

case "${1:-}" in
  up)
    ensure_venv
    shift
    exec "$venv/bin/itilflow" up --demo "$@"
    ;;
  test)
    ensure_venv
    shift
    bash .ci/install-test-deps.sh
    "$venv/bin/ruff" check .
    # On every core (pytest-xdist), at most 4: each worker starts a Prefect test server (and on
    # PostgreSQL a server) of its own. The tests that start a whole stack run in one worker, one
    # after the other (tests/conftest.py, ONE_STACK_AT_A_TIME). ITILFLOW_TEST_WORKERS=0: no xdist.
    cores=$(nproc 2>/dev/null || echo 1)
    workers=${ITILFLOW_TEST_WORKERS:-$((cores < 4 ? cores : 4))}
    exec "$venv/bin/pytest" -n "$workers" --dist loadgroup "$@"
    ;;
  *)
    echo "usage: ./dev.sh up | test [pytest args]" >&2
    exit 2
    ;;
esac
