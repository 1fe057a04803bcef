#!/usr/bin/env bash
# Launcher of an EngineCluster's MPI world: waits for the workers' sshd, then runs
#   mpiexec --hostfile <hostfile> -n <engines> ipengine --mpi ...
# so that every engine shares one MPI_COMM_WORLD. Engines read the controller's connection info from
# IPP_CONNECTION_INFO (the connection Secret's ipcontroller-engine.json).
#
# Environment (set by the operator's launcher Job):
#   IPP_ENGINES           number of engines (mpiexec -n)                      (required)
#   IPP_HOSTFILE          hostfile: `host slots=N` (Open MPI) or `host:N` (MPICH) (required)
#   IPP_CONNECTION_INFO   engine connection JSON                              (required)
#   IPP_MPI               openmpi (default) | mpich
#   IPP_SSH_DIR           mounted SSH Secret (ssh-privatekey, known_hosts)  [/etc/ipp/ssh]
#   IPP_SSH_PORT          workers' sshd port                                   [2222]
#   IPP_ENGINE_ARGS       extra ipengine arguments, space separated (shell-safe by the API schema)
#   IPP_FORWARD_ENV       comma-separated names of variables to export to every rank
#   IPP_WAIT_TIMEOUT      seconds to wait for every worker's sshd              [300]
#                         (spec.backend.mpi.workersReadyTimeoutSeconds); past it the launcher
#                         exits 3 and says which workers it could not reach
# Local mode, to run the same command on one machine (tests, laptops):
#   IPP_LOCAL=1           no ssh: hosts are expected to be localhost; adds --oversubscribe, and
#                         --allow-run-as-root when run as root (Open MPI)
#   IPP_IPENGINE          ipengine to run                                      [ipengine]
#   IPP_MPIEXEC           mpiexec to run                                       [mpiexec]
#   IPP_PRINT_ONLY=1      print the command (one argument per line) instead of running it
set -euo pipefail

die() { echo "entrypoint-launcher: $*" >&2; exit 2; }
# Exit codes the operator tells apart (the launcher container's last termination):
#   2  bad environment or hostfile;  3  workers not reachable before IPP_WAIT_TIMEOUT;
#   anything else: mpiexec's own exit status.
EXIT_WORKERS_TIMEOUT=3

engines="${IPP_ENGINES:?IPP_ENGINES is required}"
hostfile="${IPP_HOSTFILE:?IPP_HOSTFILE is required}"
: "${IPP_CONNECTION_INFO:?IPP_CONNECTION_INFO is required}"
mpi="${IPP_MPI:-openmpi}"
ssh_dir="${IPP_SSH_DIR:-/etc/ipp/ssh}"
ssh_port="${IPP_SSH_PORT:-2222}"
wait_timeout="${IPP_WAIT_TIMEOUT:-300}"
local_mode="${IPP_LOCAL:-0}"
ipengine="${IPP_IPENGINE:-ipengine}"
mpiexec="${IPP_MPIEXEC:-mpiexec}"

[[ "$engines" =~ ^[1-9][0-9]*$ ]] || die "IPP_ENGINES must be a positive integer, got '$engines'"
[[ -r "$hostfile" ]] || die "hostfile $hostfile is not readable"
case "$mpi" in openmpi|mpich) ;; *) die "IPP_MPI must be openmpi or mpich, got '$mpi'" ;; esac

# Hosts named in the hostfile (first field, before a space or a colon).
hosts=()
while IFS= read -r line || [[ -n "$line" ]]; do
  line="${line%%#*}"
  [[ -z "${line// /}" ]] && continue
  host="${line%% *}"
  host="${host%%:*}"
  hosts+=("$host")
done < "$hostfile"
[[ ${#hosts[@]} -gt 0 ]] || die "hostfile $hostfile names no host"

if [[ "$local_mode" != "1" ]]; then
  # ssh client configuration: the cluster key as identity, the workers' (pinned) host key.
  conf_dir="${IPP_SSH_CONFIG_DIR:-${HOME:-/tmp}/.ssh}"
  mkdir -p "$conf_dir"
  chmod 700 "$conf_dir"
  install -m 600 "$ssh_dir/ssh-privatekey" "$conf_dir/id_cluster"
  cat > "$conf_dir/config" <<CONF
Host *
  Port $ssh_port
  IdentityFile $conf_dir/id_cluster
  IdentitiesOnly yes
  UserKnownHostsFile $ssh_dir/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
CONF
  chmod 600 "$conf_dir/config"
  export OMPI_MCA_plm_rsh_agent="ssh"
  # Keep the hostfile's fully qualified names: Open MPI shortens them by default, and a worker's
  # short name does not resolve from another pod ("psum-worker-0: Name or service not known").
  export OMPI_MCA_orte_keep_fqdn_hostnames="${OMPI_MCA_orte_keep_fqdn_hostnames:-true}"
  export OMPI_MCA_plm_rsh_args="-F $conf_dir/config"
  export HYDRA_LAUNCHER=ssh
  export HYDRA_LAUNCHER_EXTRA_ARGS="-F $conf_dir/config"

  # Wait until every worker's sshd accepts connections (pods start in parallel), as the MPI
  # Operator's WaitForWorkersReady does; past the deadline, give up naming the missing workers
  # (also in the termination message Kubernetes reports in the pod's status).
  [[ "$wait_timeout" =~ ^[0-9]+$ ]] || die "IPP_WAIT_TIMEOUT must be a number of seconds, got '$wait_timeout'"
  deadline=$((SECONDS + wait_timeout))
  pending=("${hosts[@]}")
  while (( ${#pending[@]} > 0 )); do
    still=()
    for h in "${pending[@]}"; do
      if (exec 3<>"/dev/tcp/$h/$ssh_port") 2>/dev/null; then
        echo "entrypoint-launcher: $h:$ssh_port is up" >&2
      else
        still+=("$h")
      fi
    done
    pending=(${still[@]+"${still[@]}"})
    (( ${#pending[@]} == 0 )) && break
    if (( SECONDS >= deadline )); then
      msg="workers not ready after ${wait_timeout}s: ${#pending[@]} of ${#hosts[@]} not reachable on port $ssh_port (${pending[*]})"
      echo "entrypoint-launcher: $msg" >&2
      echo "$msg" > "${IPP_TERMINATION_LOG:-/dev/termination-log}" 2>/dev/null || true
      exit "$EXIT_WORKERS_TIMEOUT"
    fi
    sleep 1
  done
fi

# Variables every rank needs. Open MPI exports only what -x names; MPICH's hydra exports all.
forward=(IPP_CONNECTION_INFO)
if [[ -n "${IPP_FORWARD_ENV:-}" ]]; then
  IFS=',' read -r -a extra_vars <<< "$IPP_FORWARD_ENV"
  forward+=("${extra_vars[@]}")
fi

engine_args=()
if [[ -n "${IPP_ENGINE_ARGS:-}" ]]; then
  read -r -a engine_args <<< "$IPP_ENGINE_ARGS"
fi

cmd=("$mpiexec")
if [[ "$mpi" == "openmpi" ]]; then
  cmd+=(--hostfile "$hostfile" -n "$engines")
  if [[ "$local_mode" == "1" ]]; then
    cmd+=(--oversubscribe)
    if [[ "$(id -u)" == "0" ]]; then cmd+=(--allow-run-as-root); fi
  fi
  for v in "${forward[@]}"; do cmd+=(-x "$v"); done
else
  cmd+=(-f "$hostfile" -n "$engines")
  cmd+=(-genvlist "$(IFS=','; echo "${forward[*]}")")
fi
cmd+=("$ipengine" --mpi "${engine_args[@]}")

if [[ "${IPP_PRINT_ONLY:-0}" == "1" ]]; then
  printf '%s\n' "${cmd[@]}"
  exit 0
fi
echo "entrypoint-launcher: ${cmd[*]}" >&2
exec "${cmd[@]}"
