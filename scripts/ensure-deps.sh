#!/usr/bin/env bash
# Installs what `npm start` and `npm test` need on a fresh Debian 12 machine with Node.js 20 (run as root):
# the npm packages (npm ci, when node_modules is missing or older than package-lock.json) and the Debian
# packages of the services Sekisho manages when none is configured (redis-server, clamav-daemon) and of the
# sanitizer's converters (LibreOffice without a GUI, its python3-uno bridge, CJK fonts, poppler-utils); with the
# argument `test`, also Debian's Chromium for the console's browser tests and libfaketime for the fault suite.
# Sekisho itself also apt-installs a missing service binary at start; doing it here first keeps the
# first start quick and its log clean. Set SEKISHO_NO_APT=1 to skip the Debian part.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ ! -d node_modules/better-sqlite3/build ]; then
  echo "[sekisho] installing npm packages (npm ci)…" >&2
  npm ci --no-audit --no-fund >&2
fi

if [ "${SEKISHO_NO_APT:-}" = "" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
  [ -x /usr/sbin/clamd ] || command -v clamd >/dev/null || missing+=(clamav-daemon)
  command -v clamdscan >/dev/null || missing+=(clamdscan)
  [ -e /usr/lib/libreoffice/program/libswlo.so ] || missing+=(libreoffice-writer-nogui)
  [ -e /usr/lib/libreoffice/program/libsclo.so ] || missing+=(libreoffice-calc-nogui)
  [ -e /usr/lib/libreoffice/program/libsdlo.so ] || missing+=(libreoffice-impress-nogui)
  /usr/bin/python3 -c 'import uno' 2>/dev/null || missing+=(python3-uno)
  [ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || missing+=(fonts-noto-cjk)
  command -v pdfinfo >/dev/null && command -v pdftoppm >/dev/null || missing+=(poppler-utils)
  # The console's end-to-end tests drive Debian's Chromium (playwright-core, never a downloaded browser).
  [ "${1:-}" != test ] || [ -x /usr/bin/chromium ] || missing+=(chromium)
  # The fault suite's clock-jump rows (npm run test:faults) start Sekisho under libfaketime.
  [ "${1:-}" != test ] || dpkg -s libfaketime >/dev/null 2>&1 || missing+=(libfaketime)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "[sekisho] installing Debian packages: ${missing[*]}…" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
fi
