#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the facade, the files and Redis backends, the
# pure twins, gc and the Django engine (pyproject.toml: only_mutate), against
# the whole suite on the pure twins. By hand,
# not in CI: it takes a while on 2 cores. Needs `pip install mutmut pytest-timeout` and a
# redis-server on PATH (the suite starts its own).
#   tools/mutation.sh            run (resumes where a previous run stopped)
#   tools/mutation.sh results    list the surviving mutants
# Survivors that are equivalent (no behaviour can tell them apart) are listed,
# with why, in tools/mutation-survivors.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export FASTSESSION_NO_EXTENSIONS=1  # the mutated sources are the pure twins
if [ "${1:-run}" = results ]; then
    exec mutmut results
fi
# One redis-server of its own for all the runs mutmut makes in one process (tests/conftest.py: redis_url).
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
export FASTSESSION_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
mutmut run
python tools/mutation_score.py
