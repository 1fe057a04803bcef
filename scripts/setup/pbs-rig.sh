#!/bin/bash
# PBS-style test rig for the pbs backend: munge + slurmctld + slurmd with Slurm's PBS wrappers
# (qsub/qstat/qdel from slurm-wlm-torque) + an OpenSSH sshd on 127.0.0.1 with key-only login for a
# non-root user that can run the engines from the repository's ipyparallel 9.2 virtualenv.
#
#   scripts/setup/pbs-rig.sh up | down | status | env
#
# Idempotent: `up` installs missing packages, creates what is missing and starts only daemons that
# are not running. Everything lives under $PBS_RIG_DIR (default .cache/pbs-rig); Slurm finds its
# config through SLURM_CONF only (/etc/slurm is never written) and munge uses a private socket.
# Ports: slurmctld 16917, slurmd 16918, sshd 22522 (override with PBS_RIG_*_PORT).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RIG=${PBS_RIG_DIR:-$CACHE_DIR/pbs-rig}
CTLD_PORT=${PBS_RIG_CTLD_PORT:-16917}
SLURMD_PORT=${PBS_RIG_SLURMD_PORT:-16918}
SSH_PORT=${PBS_RIG_SSH_PORT:-22522}
NODE=${PBS_RIG_NODE:-node1}
NODE_CPUS=${PBS_RIG_NODE_CPUS:-8}
PART=${PBS_RIG_QUEUE:-batch}
TUSER=${PBS_RIG_USER:-ipphpc}
export SLURM_CONF=$RIG/etc/slurm.conf

alive() { local f=$1; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

packages() {
  apt_install slurmctld slurmd slurm-client slurm-wlm-torque munge openssh-server
}

write_config() {
  cat > "$SLURM_CONF.tmp" <<CONF
ClusterName=ipprig
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$RIG/munge-sock/munge.socket
StateSaveLocation=$RIG/state
SlurmdSpoolDir=$RIG/spool/%n
SlurmctldPidFile=$RIG/slurmctld.pid
SlurmdPidFile=$RIG/slurmd-%n.pid
SlurmctldLogFile=$RIG/log/slurmctld.log
SlurmdLogFile=$RIG/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobSubmitPlugins=pbs
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
EnforcePartLimits=ALL
SchedulerParameters=batch_sched_delay=0
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=300
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$NODE_CPUS RealMemory=4096 State=UNKNOWN
PartitionName=$PART Nodes=$NODE Default=YES DefaultTime=01:00:00 MaxTime=INFINITE State=UP
CONF
  mv "$SLURM_CONF.tmp" "$SLURM_CONF"
  echo "required spank_pbs.so" > "$RIG/etc/plugstack.conf"
}

up() {
  packages
  mkdir -p "$RIG"/{etc,state,spool/$NODE,log,munge,munge-sock,ssh}
  chmod 0755 "$RIG" "$RIG/etc"
  # munge: private key and socket, runs as user munge
  chown munge:munge "$RIG/munge" "$RIG/munge-sock"
  chmod 0700 "$RIG/munge"; chmod 0755 "$RIG/munge-sock"
  if [ ! -f "$RIG/munge/munge.key" ]; then
    mungekey --create --keyfile="$RIG/munge/munge.key"
    chown munge:munge "$RIG/munge/munge.key"; chmod 0400 "$RIG/munge/munge.key"
  fi
  # daemons must not inherit the lock's descriptor (9>&-), or they would hold it forever
  alive "$RIG/munge/munged.pid" || runuser -u munge -- /usr/sbin/munged 9>&- \
    --socket="$RIG/munge-sock/munge.socket" --key-file="$RIG/munge/munge.key" \
    --pid-file="$RIG/munge/munged.pid" --log-file="$RIG/munge/munged.log" --seed-file="$RIG/munge/munged.seed"

  write_config
  alive "$RIG/slurmctld.pid" || /usr/sbin/slurmctld -f "$SLURM_CONF" 9>&-
  alive "$RIG/slurmd-$NODE.pid" || /usr/sbin/slurmd -f "$SLURM_CONF" -N "$NODE" 9>&-

  # the batch user: key-only login, allowed to read the repository's virtualenvs
  id "$TUSER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$TUSER"
  usermod -p '*' "$TUSER"   # '!' (locked) is refused by sshd with UsePAM no
  local home; home=$(getent passwd "$TUSER" | cut -d: -f6)
  install -d -m 700 -o "$TUSER" -g "$TUSER" "$home/.ssh"
  [ -f "$RIG/ssh/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C pbs-rig -f "$RIG/ssh/client_key"
  install -m 600 -o "$TUSER" -g "$TUSER" "$RIG/ssh/client_key.pub" "$home/.ssh/authorized_keys"
  # a second key pair that is NOT the host's: tests use it to prove a mismatch is refused
  [ -f "$RIG/ssh/other_host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$RIG/ssh/other_host_ed25519"
  chmod 0600 "$RIG/ssh/client_key"
  [ -f "$RIG/ssh/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$RIG/ssh/host_ed25519"
  printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$RIG/ssh/host_ed25519.pub")" > "$RIG/ssh/known_hosts"
  printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$RIG/ssh/other_host_ed25519.pub")" > "$RIG/ssh/known_hosts.wrong"
  cat > "$RIG/ssh/sshd_config" <<CONF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $RIG/ssh/host_ed25519
PidFile $RIG/ssh/sshd.pid
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $TUSER
AuthorizedKeysFile .ssh/authorized_keys
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
MaxSessions 32
ClientAliveInterval 15
SetEnv SLURM_CONF=$SLURM_CONF
LogLevel INFO
CONF
  mkdir -p /run/sshd; chmod 0755 /run/sshd
  alive "$RIG/ssh/sshd.pid" || /usr/sbin/sshd -f "$RIG/ssh/sshd_config" -E "$RIG/log/sshd.log" 9>&-

  # the node must be schedulable; a DRAIN saved in $RIG/state survives restarts
  local ok="" st
  for _ in $(seq 1 100); do
    st=$(sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
    case "$st" in
      idle|mix|alloc) ok=1; break ;;
      drain|drng|down|down\*|drain\*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.1
  done
  [ -n "$ok" ] || { log "node $NODE not schedulable"; sinfo -R >&2; exit 1; }
  for _ in $(seq 1 50); do alive "$RIG/ssh/sshd.pid" && break; sleep 0.1; done
  alive "$RIG/ssh/sshd.pid" || { log "sshd did not start: see $RIG/log/sshd.log"; exit 1; }
  env_lines
}

# stop the listener and the sessions it forked (they would otherwise keep open links alive)
sshd_stop() {
  if alive "$RIG/ssh/sshd.pid"; then
    local pid kids; pid=$(cat "$RIG/ssh/sshd.pid")
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
    kill "$pid" 2>/dev/null || true
    for k in $kids; do kill "$k" 2>/dev/null || true; done
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$RIG/ssh/sshd.pid"
}
sshd_start() { alive "$RIG/ssh/sshd.pid" || /usr/sbin/sshd -f "$RIG/ssh/sshd_config" -E "$RIG/log/sshd.log" 9>&-; }

down() {
  [ -d "$RIG" ] || return 0
  # cancel jobs first so no slurmstepd is left behind, then stop the daemons by their pid files
  alive "$RIG/slurmctld.pid" && scancel --quiet --partition="$PART" 2>/dev/null || true
  for f in "$RIG/ssh/sshd.pid" "$RIG/slurmd-$NODE.pid" "$RIG/slurmctld.pid" "$RIG/munge/munged.pid"; do
    alive "$f" && kill "$(cat "$f")" 2>/dev/null || true
  done
  for _ in $(seq 1 50); do
    local any=""
    for f in "$RIG/slurmd-$NODE.pid" "$RIG/slurmctld.pid" "$RIG/munge/munged.pid"; do alive "$f" && any=1; done
    [ -z "$any" ] && break; sleep 0.1
  done
  rm -f "$RIG/ssh/sshd.pid"
}

status() {
  local rc=0
  for f in "$RIG/munge/munged.pid" "$RIG/slurmctld.pid" "$RIG/slurmd-$NODE.pid" "$RIG/ssh/sshd.pid"; do
    if alive "$f"; then printf '%-12s alive %s\n' "$(basename "$f" .pid)" "$(cat "$f")"; else printf '%-12s dead\n' "$(basename "$f" .pid)"; rc=1; fi
  done
  return $rc
}

# KEY=value lines for the test support: how to reach the rig
env_lines() {
  cat <<ENV
PBS_RIG_DIR=$RIG
PBS_RIG_HOST=127.0.0.1
PBS_RIG_SSH_PORT=$SSH_PORT
PBS_RIG_USER=$TUSER
PBS_RIG_HOME=$(getent passwd "$TUSER" | cut -d: -f6)
PBS_RIG_QUEUE=$PART
PBS_RIG_KEY=$RIG/ssh/client_key
PBS_RIG_KNOWN_HOSTS=$RIG/ssh/known_hosts
PBS_RIG_KNOWN_HOSTS_WRONG=$RIG/ssh/known_hosts.wrong
SLURM_CONF=$SLURM_CONF
ENV
}
env() { env_lines; }

# one up/down at a time (test files start the rig concurrently)
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/pbs-rig.lock"
flock -w 600 9

case "${1:-up}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) env_lines ;;
  sshd-stop) sshd_stop ;;
  sshd-start) sshd_start ;;
  *) echo "usage: $0 up|down|status|env|sshd-stop|sshd-start" >&2; exit 2 ;;
esac
