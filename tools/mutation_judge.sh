#!/usr/bin/env bash
# Judge named mutants again, one pytest run each, without mutmut's runner (whose `run <names>` crashes
# here in its stats pass). Run it in a clone where `mutmut run` has generated mutants/ (stop it once
# "Generating mutants" is done), with the tests to run in TESTS:
#   TESTS="tests/test_store.py tests/test_users.py" tools/mutation_judge.sh NAME [NAME ...]
#   mutmut results | awk -F: '/survived/ {print $1}' | xargs tools/mutation_judge.sh
# Prints "NAME killed", "NAME survived" or "NAME timeout". mutmut's trampolines pick the mutant from
# MUTANT_UNDER_TEST; -x stops at the first failure, so a killed mutant is judged quickly. Put the tests
# most likely to kill first in TESTS. Needs FASTSESSION_TEST_REDIS_URL for the Redis tests.
set -uo pipefail
cd "$(dirname "$0")/../mutants"
for name in "$@"; do
    MUTANT_UNDER_TEST="$name" FASTSESSION_NO_EXTENSIONS=1 timeout 600 \
        python -m pytest -x -q -p no:cacheprovider ${TESTS:?set TESTS to the test files to run} >/dev/null 2>&1
    case $? in
        0) echo "$name survived" ;;
        124) echo "$name timeout" ;;
        *) echo "$name killed" ;;
    esac
done
