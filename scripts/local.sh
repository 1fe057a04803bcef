#!/usr/bin/env bash
# The embedded default: installs what it needs (Open MPI, mpi4py and numpy from Debian, an
# ipyparallel 9.2 virtualenv, node modules), then runs our controller in-process with N ipengines
# under a local mpiexec. Arguments go to `ipp-operator local` (default: --engines 8).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/setup/system.sh"
bash "$here/setup/node.sh"
bash "$here/setup/python.sh" 9
# shellcheck source=scripts/setup/lib.sh
source "$here/setup/lib.sh"
[ $# -eq 0 ] && set -- --engines 8
exec "$REPO_ROOT/bin/ipp-operator" local --python "$CACHE_DIR/venv/ipp9/bin/python" "$@"
