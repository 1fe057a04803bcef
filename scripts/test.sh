#!/usr/bin/env bash
# The whole test suite from a fresh machine: provisions every real part it needs (Debian packages,
# node modules, ipyparallel 9.2 and 8.8 virtualenvs, kube-apiserver/etcd/helm built from the Go
# module proxy, the single-node cluster's binaries and images (scripts/setup/cluster.sh), all cached under
# ~/.cache/ipp-operator/ keyed by version or content), runs the static checks, then every
# unit and integration test. The last line is the summary: "N passed, N failed".
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/setup/lib.sh
source "$here/setup/lib.sh"
set +e
cd "$REPO_ROOT" || exit 1

for step in system node python kube cluster prometheus pbs-rig openpbs; do
  [ -f "$here/setup/$step.sh" ] || continue
  if ! bash "$here/setup/$step.sh"; then echo "set-up step $step failed"; echo "0 passed, 1 failed"; exit 1; fi
done

passed=0; failed=0
check() { # check <name> <command...>: a static check counted as one test
  local name="$1"; shift
  if "$@"; then passed=$((passed + 1)); echo "ok - $name"; else failed=$((failed + 1)); echo "not ok - $name"; fi
}
check "typecheck (tsc --noEmit)" npx tsc --noEmit -p .
check "lint (eslint, including the pure-core import boundary)" npx eslint .
check "shellcheck (native/ and scripts/)" shellcheck -x native/engine/*.sh scripts/*.sh scripts/setup/*.sh .ci/run

tap="$(mktemp)"
mapfile -t test_files < <(find test/unit -name '*.test.ts' | sort; find test/integration -name '*.test.ts' 2>/dev/null | sort)
# Unit tests first (fast, pure), then integration tests against real parts, one file at a time
# because they share two cores and real ports.
node --import tsx --test --test-concurrency=1 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" \
  "${test_files[@]}"
rc=$?
tp=$(grep -E '^# pass ' "$tap" | tail -1 | awk '{print $3}')
tf=$(grep -E '^# fail ' "$tap" | tail -1 | awk '{print $3}')
rm -f "$tap"
passed=$((passed + ${tp:-0})); failed=$((failed + ${tf:-0}))
if [ $rc -ne 0 ] && [ "${tf:-0}" = 0 ]; then failed=$((failed + 1)); echo "test runner exited $rc"; fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
