#!/usr/bin/env bash
# Prometheus and promtool from Debian, for the test that checks every Grafana dashboard query
# against a real Prometheus. The tests start their own server on loopback with a temporary config;
# the packaged service is stopped and disabled so it does not scrape or hold port 9090.
# shellcheck source=scripts/setup/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if ! dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q 'install ok installed'; then
  # policy-rc.d 101: the package's postinst must not start the daemon (there may be no init).
  policy=/usr/sbin/policy-rc.d
  created=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null; as_root chmod +x "$policy"; created=1; fi
  apt_install prometheus
  if [ "$created" = 1 ]; then as_root rm -f "$policy"; fi
fi
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
/usr/bin/prometheus --version >/dev/null 2>&1 || { log "prometheus installed but does not run"; exit 1; }
/usr/bin/promtool --version >/dev/null 2>&1 || { log "promtool installed but does not run"; exit 1; }
