#!/usr/bin/env bash
# Node dependencies from the lockfile. Re-runs `npm ci` only when package-lock.json changed since
# the last install (a stamp keyed by its hash), so a second run costs one sha256sum.
# shellcheck source=scripts/setup/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT" || exit 1
want="$(sha256sum package-lock.json | cut -c1-16)"
stamp="node_modules/.ipp-operator-lock-$want"
if [ ! -f "$stamp" ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  touch "$stamp"
fi
# npm 11 may skip install scripts; check that every native dependency we rely on really loads.
node -e "
  import('zeromq').then(z => { if (!z.capability.curve) throw new Error('zeromq without CURVE'); })
    .then(() => import('tsx/esm/api'))
    .catch(e => { console.error('[setup] native dependency check failed: ' + e.message); process.exit(1); });
"
