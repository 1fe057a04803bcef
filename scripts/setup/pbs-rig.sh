#!/bin/bash
# PBS-style test rig for the pbs backend: munge + slurmctld + slurmd with Slurm's PBS wrappers
# (qsub/qstat/qdel from slurm-wlm-torque) + an OpenSSH sshd on 127.0.0.1 with key-only login for a
# non-root batch user (ipphpc) that runs the engines from a Python environment of its own.
#
#   scripts/setup/pbs-rig.sh [install] | up | down | purge | status | env
#   scripts/setup/pbs-rig.sh openpbs-up | openpbs-down | openpbs-status
#
# install (the default): the Debian packages and the batch user's virtualenv, no daemons.
# up: install, then create what is missing and start only the daemons that are not running;
#     prints KEY=value lines saying how to reach the rig (as `env` does).
# down: cancel the rig's jobs, stop its daemons and sshd sessions. purge: down, then delete the rig.
#
# The daemons (munged as user munge, slurmd, the batch user's jobs) must reach the rig's files, so
# its state lives outside the checkout, whose parents may be private (mktemp -d, /root): a
# root-owned, world-traversable directory keyed by the checkout path,
# /var/tmp/ipp-pbs-rig-<8 hex of sha256($REPO_ROOT)> (or $IPP_PBS_RIG_DIR). It holds Slurm's
# config and state, munge's key and socket, sshd's keys and config, and the batch user's
# virtualenv (venv/ipp9: Debian's python3 + ipyparallel 9.2.0, built by python.sh --dir).
# Slurm finds its config through SLURM_CONF only (/etc/slurm is never written); munge uses a
# private socket. Ports (slurmctld, slurmd, sshd: three consecutive ones in 20000-21599) are
# derived from the same hash, moved on when busy, and kept in <rig>/ports; PBS_RIG_CTLD_PORT,
# PBS_RIG_SLURMD_PORT and PBS_RIG_SSH_PORT override them. Two checkouts get two separate rigs.
#
# openpbs-up: up, then also a real OpenPBS (server, scheduler, MoM, comm and its PostgreSQL, built
# by openpbs.sh) behind the same sshd, for a second batch user (ippbs) whose sessions find
# /opt/pbs/bin first. OpenPBS ignores loopback addresses, so the PBS host is a name of its own
# (ipp-openpbs, in /etc/hosts) on a veth pair this script creates into a network namespace of its
# own: every packet stays on this machine. There is one OpenPBS per machine (/opt/pbs,
# /var/spool/pbs, /etc/pbs.conf and its ports are fixed), shared by every checkout's rig.
# shellcheck source=scripts/setup/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
umask 022

KEY=$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-8)
RIG=${IPP_PBS_RIG_DIR:-/var/tmp/ipp-pbs-rig-$KEY}
NODE=${PBS_RIG_NODE:-node1}
NODE_CPUS=${PBS_RIG_NODE_CPUS:-8}
PART=${PBS_RIG_QUEUE:-batch}
TUSER=${PBS_RIG_USER:-ipphpc}
VENV=$RIG/venv/ipp9
OPBS_USER=${OPENPBS_RIG_USER:-ippbs}
OPBS_HOST=ipp-openpbs
OPBS_NET=${OPENPBS_RIG_NET:-10.254.70}
OPBS_NS=ipp-openpbs
OPBS_QUEUE=workq
PBS_EXEC=/opt/pbs
export SLURM_CONF=$RIG/etc/slurm.conf
CTLD_PORT="" SLURMD_PORT="" SSH_PORT=""

# a daemon is alive while its pid runs (a zombie waiting for init to reap it is not)
pid_alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1; [[ $st != Z* ]]; }
alive() { [ -f "$1" ] && pid_alive "$(cat "$1")"; }
any_alive() {
  local f
  for f in "$RIG/munge/munged.pid" "$RIG/slurmctld.pid" "$RIG/slurmd-$NODE.pid" "$RIG/ssh/sshd.pid"; do alive "$f" && return 0; done
  return 1
}
port_free() { ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# The rig directory must be ours: root-owned and writable by nobody else (it holds munge's key).
make_rig_dir() {
  mkdir -p "$RIG"
  local owner mode; read -r owner mode < <(stat -c '%u %a' "$RIG")
  if [ "$owner" != 0 ] || [ $((8#$mode & 8#022)) != 0 ] || [ -L "$RIG" ]; then
    log "$RIG is not a root-owned directory writable only by root (owner $owner, mode $mode): refusing to use it"
    exit 1
  fi
  chmod 0755 "$RIG"
}

# Ports: remembered in $RIG/ports; chosen from the checkout's hash on first use, and chosen again
# when one is taken by something else while the rig is down.
load_ports() {
  if [ -f "$RIG/ports" ]; then
    # shellcheck source=/dev/null
    source "$RIG/ports"
  fi
  CTLD_PORT=${PBS_RIG_CTLD_PORT:-$CTLD_PORT}
  SLURMD_PORT=${PBS_RIG_SLURMD_PORT:-$SLURMD_PORT}
  SSH_PORT=${PBS_RIG_SSH_PORT:-$SSH_PORT}
}
choose_ports() {
  load_ports
  if [ -n "$CTLD_PORT" ] && [ -n "$SLURMD_PORT" ] && [ -n "$SSH_PORT" ]; then
    any_alive && return 0
    port_free "$CTLD_PORT" && port_free "$SLURMD_PORT" && port_free "$SSH_PORT" && return 0
    if [ -n "${PBS_RIG_CTLD_PORT:-}${PBS_RIG_SLURMD_PORT:-}${PBS_RIG_SSH_PORT:-}" ]; then
      log "a port given in PBS_RIG_*_PORT is in use ($CTLD_PORT $SLURMD_PORT $SSH_PORT)"; exit 1
    fi
    log "ports $CTLD_PORT/$SLURMD_PORT/$SSH_PORT are taken by something else: choosing others"
  fi
  local h=$((16#${KEY:0:4} % 400)) i base=""
  for i in $(seq 0 399); do
    base=$((20000 + ((h + i) % 400) * 4))
    if port_free "$base" && port_free $((base + 1)) && port_free $((base + 2)); then break; fi
    base=""
  done
  [ -n "$base" ] || { log "no three free consecutive ports in 20000-21599"; exit 1; }
  printf 'CTLD_PORT=%s\nSLURMD_PORT=%s\nSSH_PORT=%s\n' "$base" $((base + 1)) $((base + 2)) > "$RIG/ports.tmp"
  mv "$RIG/ports.tmp" "$RIG/ports"
  CTLD_PORT="" SLURMD_PORT="" SSH_PORT=""
  load_ports
}

do_install() {
  apt_install slurmctld slurmd slurm-client slurm-wlm-torque munge openssh-server
  # the batch user's Python: readable by it wherever the checkout is
  bash "$(dirname "${BASH_SOURCE[0]}")/python.sh" --dir "$RIG/venv" 9
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

# batch_user <name>: key-only login with this rig's key; its own key pair authorised for itself and
# this rig's host key in its known_hosts: what a site's keys give compute nodes, so engines can
# `ssh` to the login host (network.mode sshTunnel)
batch_user() {
  local u=$1 home
  id "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash "$u" || id "$u" >/dev/null
  usermod -p '*' "$u"   # '!' (locked) is refused by sshd with UsePAM no
  home=$(getent passwd "$u" | cut -d: -f6)
  install -d -m 700 -o "$u" -g "$u" "$home/.ssh"
  # each rig adds its own key (sshd refuses an AuthorizedKeysFile under world-writable /var/tmp, so
  # it stays in the home); another checkout's rig keeps its line
  local keys=$home/.ssh/authorized_keys
  ( flock 8
    grep -qxF "$(cat "$RIG/ssh/client_key.pub")" "$keys" 2>/dev/null || cat "$RIG/ssh/client_key.pub" >> "$keys"
    [ -f "$home/.ssh/id_ed25519" ] || runuser -u "$u" -- ssh-keygen -q -t ed25519 -N '' -C "$u self" -f "$home/.ssh/id_ed25519"
    grep -qxF "$(cat "$home/.ssh/id_ed25519.pub")" "$keys" 2>/dev/null || cat "$home/.ssh/id_ed25519.pub" >> "$keys"
    chown "$u:$u" "$keys"; chmod 600 "$keys"
    local kh=$home/.ssh/known_hosts line; line=$(cat "$RIG/ssh/known_hosts")
    grep -qxF "$line" "$kh" 2>/dev/null || { grep -v "^\[127\.0\.0\.1\]:$SSH_PORT " "$kh" 2>/dev/null > "$kh.new" || true; echo "$line" >> "$kh.new"; mv "$kh.new" "$kh"; }
    chown "$u:$u" "$kh"; chmod 644 "$kh"
  ) 8>"$home/.ssh/.pbs-rig.lock"
}

# sshd's config; a running sshd re-reads it on SIGHUP when it changed. The OpenPBS user's sessions
# find PBS's commands first (Slurm's wrappers have the same names).
write_sshd_config() {
  cat > "$RIG/ssh/sshd_config.tmp" <<CONF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $RIG/ssh/host_ed25519
PidFile $RIG/ssh/sshd.pid
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $TUSER $OPBS_USER
AuthorizedKeysFile .ssh/authorized_keys
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
MaxSessions 32
MaxStartups 100:30:200
ClientAliveInterval 15
SetEnv SLURM_CONF=$SLURM_CONF
LogLevel INFO
Match User $OPBS_USER
  SetEnv PATH=$PBS_EXEC/bin:/usr/local/bin:/usr/bin:/bin
CONF
  if cmp -s "$RIG/ssh/sshd_config.tmp" "$RIG/ssh/sshd_config"; then rm -f "$RIG/ssh/sshd_config.tmp"; return 0; fi
  mv "$RIG/ssh/sshd_config.tmp" "$RIG/ssh/sshd_config"
  if alive "$RIG/ssh/sshd.pid"; then kill -HUP "$(cat "$RIG/ssh/sshd.pid")"; fi
}

up() {
  do_install
  choose_ports
  mkdir -p "$RIG"/{etc,state,spool/"$NODE",log,munge,munge-sock,ssh}
  chmod 0755 "$RIG/etc"
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

  [ -f "$RIG/ssh/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C "pbs-rig $RIG" -f "$RIG/ssh/client_key"
  # a second key pair that is NOT the host's: tests use it to prove a mismatch is refused
  [ -f "$RIG/ssh/other_host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$RIG/ssh/other_host_ed25519"
  chmod 0600 "$RIG/ssh/client_key"
  [ -f "$RIG/ssh/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$RIG/ssh/host_ed25519"
  printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$RIG/ssh/host_ed25519.pub")" > "$RIG/ssh/known_hosts"
  printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$RIG/ssh/other_host_ed25519.pub")" > "$RIG/ssh/known_hosts.wrong"
  # the batch user: key-only login; its Python is $VENV (the checkout may be out of its reach)
  batch_user "$TUSER"
  write_sshd_config
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
    for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
  fi
  rm -f "$RIG/ssh/sshd.pid"
}
sshd_start() { alive "$RIG/ssh/sshd.pid" || /usr/sbin/sshd -f "$RIG/ssh/sshd_config" -E "$RIG/log/sshd.log" 9>&-; }

down() {
  [ -d "$RIG" ] || return 0
  # cancel jobs first and let them end (their engines are killed by slurmd), so no slurmstepd or
  # engine is left behind; then stop sshd with its sessions and the daemons by their pid files
  if alive "$RIG/slurmctld.pid" && alive "$RIG/slurmd-$NODE.pid"; then
    scancel --quiet --partition="$PART" 2>/dev/null || true
    for _ in $(seq 1 200); do
      [ -z "$(squeue -h -p "$PART" -o %i 2>/dev/null || echo busy)" ] && break
      sleep 0.1
    done
  fi
  sshd_stop
  local f
  for f in "$RIG/slurmd-$NODE.pid" "$RIG/slurmctld.pid" "$RIG/munge/munged.pid"; do
    if alive "$f"; then kill "$(cat "$f")" 2>/dev/null || true; fi
  done
  for _ in $(seq 1 100); do
    local any=""
    for f in "$RIG/slurmd-$NODE.pid" "$RIG/slurmctld.pid" "$RIG/munge/munged.pid"; do alive "$f" && any=1; done
    [ -z "$any" ] && break; sleep 0.1
  done
  for f in "$RIG/slurmd-$NODE.pid" "$RIG/slurmctld.pid" "$RIG/munge/munged.pid"; do
    if alive "$f"; then log "$(basename "$f" .pid) did not stop: killing it"; kill -9 "$(cat "$f")" 2>/dev/null || true; fi
  done
}

# down, then forget the rig: its key leaves the batch user's authorized_keys, its directory goes
purge() {
  down
  local home; home=$(getent passwd "$TUSER" | cut -d: -f6 || true)
  if [ -n "$home" ] && [ -f "$RIG/ssh/client_key.pub" ] && [ -f "$home/.ssh/authorized_keys" ]; then
    local pub keys=$home/.ssh/authorized_keys; pub=$(cat "$RIG/ssh/client_key.pub")
    ( flock 8; grep -vxF "$pub" "$keys" > "$keys.tmp" || true
      chown "$TUSER:$TUSER" "$keys.tmp"; chmod 600 "$keys.tmp"; mv "$keys.tmp" "$keys"
    ) 8>"$home/.ssh/.pbs-rig.lock"
  fi
  rm -rf "$RIG"
}

status() {
  local rc=0
  for f in "$RIG/munge/munged.pid" "$RIG/slurmctld.pid" "$RIG/slurmd-$NODE.pid" "$RIG/ssh/sshd.pid"; do
    if alive "$f"; then printf '%-12s alive %s\n' "$(basename "$f" .pid)" "$(cat "$f")"; else printf '%-12s dead\n' "$(basename "$f" .pid)"; rc=1; fi
  done
  return $rc
}

# ---- OpenPBS -------------------------------------------------------------------------------------

opbs_alive() { "$PBS_EXEC/libexec/pbs_init.d" status 2>/dev/null | grep -q 'pbs_server is pid'; }

# a host address PBS accepts (not loopback) that never leaves this machine: the host end of a veth
# pair whose other end lives in a network namespace of the rig's own
opbs_network() {
  if ! ip -o -4 addr show dev ipp-pbs0 2>/dev/null | grep -q " $OPBS_NET.1/"; then
    ip netns list 2>/dev/null | grep -qw "$OPBS_NS" || ip netns add "$OPBS_NS"
    ip link show ipp-pbs0 >/dev/null 2>&1 || ip link add ipp-pbs0 type veth peer name ipp-pbs1 netns "$OPBS_NS"
    ip addr add "$OPBS_NET.1/30" dev ipp-pbs0 2>/dev/null || true
    ip link set ipp-pbs0 up
    ip netns exec "$OPBS_NS" ip addr add "$OPBS_NET.2/30" dev ipp-pbs1 2>/dev/null || true
    ip netns exec "$OPBS_NS" ip link set ipp-pbs1 up
    ip netns exec "$OPBS_NS" ip link set lo up
  fi
  if ! grep -qE "^$OPBS_NET\.1[[:space:]]+$OPBS_HOST\$" /etc/hosts; then
    ( flock 8; grep -v "[[:space:]]$OPBS_HOST\$" /etc/hosts > /etc/hosts.ipp || true
      echo "$OPBS_NET.1 $OPBS_HOST" >> /etc/hosts.ipp; cat /etc/hosts.ipp > /etc/hosts; rm -f /etc/hosts.ipp
    ) 8>/run/ipp-hosts.lock
  fi
}

opbs_conf() {
  cat <<CONF
PBS_EXEC=$PBS_EXEC
PBS_HOME=/var/spool/pbs
PBS_SERVER=$OPBS_HOST
PBS_LEAF_NAME=$OPBS_HOST
PBS_MOM_NODE_NAME=$OPBS_HOST
PBS_START_SERVER=1
PBS_START_SCHED=1
PBS_START_COMM=1
PBS_START_MOM=1
PBS_CORE_LIMIT=unlimited
PBS_SCP=/usr/bin/scp
CONF
}

openpbs_up() {
  bash "$(dirname "${BASH_SOURCE[0]}")/openpbs.sh" 9>&-
  opbs_network
  batch_user "$OPBS_USER"
  write_sshd_config
  if ! cmp -s <(opbs_conf) /etc/pbs.conf 2>/dev/null || [ ! -d /var/spool/pbs/server_priv ]; then
    if opbs_alive; then "$PBS_EXEC/libexec/pbs_init.d" stop 9>&- >/dev/null 2>&1 || true; fi
    # a first start under another host name leaves a datastore that never starts: begin afresh
    rm -rf /var/spool/pbs
    PBS_SERVER=$OPBS_HOST PBS_START_MOM=1 "$PBS_EXEC/libexec/pbs_postinstall" server >"$RIG/log/openpbs-postinstall.log" 2>&1 9>&- || true
    opbs_conf > /etc/pbs.conf
    # job output goes to the submit host's home, which is this machine: copy, never rcp/scp
    # shellcheck disable=SC2016 # MoM's directives start with a literal $
    printf '$clienthost %s\n$usecp *:/home/ /home/\n' "$OPBS_HOST" > /var/spool/pbs/mom_priv/config
  fi
  chmod 4755 "$PBS_EXEC/sbin/pbs_iff" "$PBS_EXEC/sbin/pbs_rcp"
  if ! opbs_alive; then
    "$PBS_EXEC/libexec/pbs_init.d" start >"$RIG/log/openpbs-start.log" 2>&1 9>&- \
      || { log "OpenPBS did not start:"; cat "$RIG/log/openpbs-start.log" >&2; exit 1; }
  fi
  local q=$PBS_EXEC/bin/qmgr ok=""
  for _ in $(seq 1 100); do "$q" -c 'list server' >/dev/null 2>&1 && { ok=1; break; }; sleep 0.2; done
  [ -n "$ok" ] || { log "pbs_server does not answer"; exit 1; }
  # finished jobs stay visible to `qstat -x`; the scheduler runs often; 8 cpus as on the Slurm node
  "$q" -c 'set server job_history_enable = True'
  "$q" -c 'set server scheduler_iteration = 2' 2>/dev/null || true
  "$q" -c "set sched scheduler_iteration = 2" 2>/dev/null || true
  "$PBS_EXEC/bin/pbsnodes" "$OPBS_HOST" >/dev/null 2>&1 || "$q" -c "create node $OPBS_HOST"
  "$q" -c "set node $OPBS_HOST resources_available.ncpus = $NODE_CPUS"
  ok=""
  for _ in $(seq 1 150); do
    "$PBS_EXEC/bin/pbsnodes" "$OPBS_HOST" 2>/dev/null | grep -qE 'state = (free|job-busy)' && { ok=1; break; }
    sleep 0.2
  done
  [ -n "$ok" ] || { log "OpenPBS node $OPBS_HOST is not free"; "$PBS_EXEC/bin/pbsnodes" -a >&2 || true; exit 1; }
}

openpbs_down() {
  [ -x "$PBS_EXEC/libexec/pbs_init.d" ] || return 0
  if opbs_alive; then
    # jobs first (their engines with them), then the daemons
    local ids; ids=$("$PBS_EXEC/bin/qselect" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$ids" ] || "$PBS_EXEC/bin/qdel" -W force $ids 2>/dev/null || true
    "$PBS_EXEC/libexec/pbs_init.d" stop >/dev/null 2>&1 9>&- || true
  fi
}

openpbs_env_lines() {
  cat <<ENV
OPENPBS_RIG_USER=$OPBS_USER
OPENPBS_RIG_HOME=$(getent passwd "$OPBS_USER" | cut -d: -f6)
OPENPBS_RIG_QUEUE=$OPBS_QUEUE
OPENPBS_RIG_SERVER=$OPBS_HOST
OPENPBS_RIG_EXEC=$PBS_EXEC
ENV
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
PBS_RIG_VENV=$VENV
SLURM_CONF=$SLURM_CONF
ENV
}

# one command at a time per rig (test files start the rig concurrently); the rig directory is only
# created by install/up
case "${1:-install}" in
  install|up|sshd-start|sshd-stop|openpbs-up) make_rig_dir ;;
  openpbs-down) [ -d "$RIG" ] || { openpbs_down; exit 0; } ;;
  openpbs-status) opbs_alive; exit ;;
  down|purge) [ -d "$RIG" ] || exit 0 ;;
  status) [ -d "$RIG" ] || { echo "no rig at $RIG"; exit 1; } ;;
  env) [ -d "$RIG" ] || { env_lines; exit 0; } ;;
  *) echo "usage: $0 install|up|down|purge|status|env|sshd-stop|sshd-start|openpbs-up|openpbs-down|openpbs-status" >&2; exit 2 ;;
esac
exec 9>"$RIG/lock"
flock -w 600 9
load_ports

case "${1:-install}" in
  install) do_install ;;
  up) up ;;
  down) down ;;
  purge) purge ;;
  status) status ;;
  env) env_lines ;;
  sshd-stop) sshd_stop ;;
  sshd-start) sshd_start ;;
  openpbs-up) up >/dev/null; openpbs_up; env_lines; openpbs_env_lines ;;
  openpbs-down) openpbs_down ;;
esac
