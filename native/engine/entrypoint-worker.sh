#!/usr/bin/env bash
# Worker of an EngineCluster's MPI world: runs sshd (as the image's non-root user, on an
# unprivileged port) so the launcher's mpiexec can start ranks here. The cluster's SSH key pair is
# both the host key and the only authorized key; the launcher pins it in known_hosts.
#
# Environment: IPP_SSH_DIR (mounted SSH Secret) [/etc/ipp/ssh], IPP_SSH_PORT [2222],
#              IPP_SSHD_DIR (writable runtime dir) [/tmp/sshd].
set -euo pipefail

ssh_dir="${IPP_SSH_DIR:-/etc/ipp/ssh}"
port="${IPP_SSH_PORT:-2222}"
run="${IPP_SSHD_DIR:-/tmp/sshd}"

for f in ssh-privatekey authorized_keys; do
  [[ -r "$ssh_dir/$f" ]] || { echo "entrypoint-worker: $ssh_dir/$f is not readable" >&2; exit 2; }
done

mkdir -p "$run"
chmod 700 "$run"
install -m 600 "$ssh_dir/ssh-privatekey" "$run/host_key"
install -m 600 "$ssh_dir/authorized_keys" "$run/authorized_keys"
cat > "$run/sshd_config" <<CONF
Port $port
HostKey $run/host_key
AuthorizedKeysFile $run/authorized_keys
PidFile $run/sshd.pid
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
AcceptEnv OMPI_* PMIX_* IPP_*
CONF

echo "entrypoint-worker: sshd on port $port" >&2
exec /usr/sbin/sshd -D -e -f "$run/sshd_config"
