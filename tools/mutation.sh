#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the facade, the files backend, the pure twins,
# gc and the Django engine, against the whole suite on the pure twins. By hand,
# not in CI: it takes a while on 2 cores. Needs `pip install mutmut` and a
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
mutmut run
python tools/mutation_score.py
