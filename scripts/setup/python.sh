#!/usr/bin/env bash
# Python virtualenvs with unmodified ipyparallel, one per supported version, built from Debian's
# interpreter with --system-site-packages so they reuse Debian's mpi4py and numpy (built against
# Debian's Open MPI). Usage: python.sh [--dir DIR] [9|8]...   (default: both, under ~/.cache/ipp-operator/venv)
# Each venv is DIR/ipp<major>, stamped with its ipyparallel version so a second run is instant.
# The 9.x venv also gets dask.distributed (rc.become_dask), under a stamp of its own so adding it
# does not rebuild a venv that is in use.
# shellcheck source=scripts/setup/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
declare -A IPP_VERSION=([9]=9.2.0 [8]=8.8.0)
DISTRIBUTED_VERSION=2026.8.0
venv_root="$CACHE_DIR/venv"
if [ "${1:-}" = --dir ]; then
  [ -n "${2:-}" ] || { log "python.sh: --dir needs a directory"; exit 2; }
  venv_root=$2; shift 2
fi
versions=("$@"); [ ${#versions[@]} -eq 0 ] && versions=(9 8)
for major in "${versions[@]}"; do
  want="${IPP_VERSION[$major]}"
  venv="$venv_root/ipp$major"
  stamp="$venv/.ipp-operator-$want-2"
  [ -f "$stamp" ] && continue
  log "virtualenv $venv (ipyparallel $want)"
  rm -rf "$venv"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "ipyparallel==$want" ipykernel ipython paramiko
  "$venv/bin/python" -c "import ipyparallel, mpi4py, numpy, IPython, paramiko; assert ipyparallel.__version__ == '$want', ipyparallel.__version__"
  touch "$stamp"
done
# The EngineCluster launchers (native/python/ipp_operator_launchers) talk to the Kubernetes API with
# the kubernetes client; the tests pip-install the package itself into the ipp9 venv from the path
# (offline: --no-deps --no-build-isolation, so setuptools must be there too).
for major in "${versions[@]}"; do
  venv="$venv_root/ipp$major"
  if [ "$major" != 9 ] || [ "$venv_root" != "$CACHE_DIR/venv" ]; then continue; fi
  "$venv/bin/python" -c "import kubernetes, setuptools, yaml" 2>/dev/null && continue
  log "kubernetes client into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes>=31" "setuptools>=61" pyyaml
done
for major in "${versions[@]}"; do
  if [ "$major" != 9 ] || [ "$venv_root" != "$CACHE_DIR/venv" ]; then continue; fi
  venv="$venv_root/ipp9"
  extras="$venv/.ipp-operator-distributed-$DISTRIBUTED_VERSION"
  [ -f "$extras" ] && continue
  log "dask.distributed $DISTRIBUTED_VERSION in $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "distributed==$DISTRIBUTED_VERSION"
  "$venv/bin/python" -c "import distributed; assert distributed.__version__ == '$DISTRIBUTED_VERSION', distributed.__version__"
  touch "$extras"
done
