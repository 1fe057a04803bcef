#!/usr/bin/env bash
# Debian packages the controller's engines and the test rig need: Open MPI, mpi4py and numpy
# (Debian builds, reused by the virtualenvs), the venv module.
# shellcheck source=scripts/setup/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
apt_install openmpi-bin libopenmpi-dev python3-mpi4py python3-numpy python3-venv python3-dev ca-certificates shellcheck
