#!/usr/bin/env bash
# Install the Debian packages the itilflow test suite needs, if they are missing.
#
# Idempotent: when everything is installed it does nothing (no apt-get update, no root needed).
#
#   .ci/install-test-deps.sh                 # the default list below
#   .ci/install-test-deps.sh pkg1 pkg2       # only these packages
#   ITILFLOW_EXTRA_TEST_PACKAGES="foo bar" .ci/install-test-deps.sh   # default list + extras
#
# Packaged daemons are NOT left running: the tests start their own instances on free loopback
# ports, and a packaged alertmanager/prometheus/postgresql would grab 9093/9090/5432.  During the
# install a /usr/sbin/policy-rc.d answering 101 ("action forbidden") stops the maintainer scripts
# from starting services (invoke-rc.d and deb-systemd-invoke both honour it); afterwards every
# init script / systemd unit shipped by a newly installed package is stopped and, on systemd
# hosts, disabled.
#
# Exit status: 0 when all packages are installed at the end, 1 otherwise (e.g. not root and no
# passwordless sudo, no apt-get, or the install failed).
set -euo pipefail

# Debian packages needed by the test suite. Append new ones here.
TEST_DEB_PACKAGES=(
  prometheus-alertmanager # tests/support/alertmanager.py (real Alertmanager e2e tests)
  chromium                # tests/changes: the approval link clicked in a real browser
  chromium-driver         # ... driven by selenium through Debian's chromedriver
  libpango-1.0-0          # weasyprint (the monthly report's PDF)
  libpangoft2-1.0-0       # weasyprint
  fonts-wqy-microhei      # CJK glyphs in the zh_CN report's PDF
  poppler-utils           # pdftoppm: tests/reports turn the PDF into PNG pages
  prometheus-node-exporter # tests/inspections: a real /metrics to scrape
  prometheus              # tests/inspections: the PromQL path (scrapes that node_exporter)
  postgresql              # tests/support/postgres.py: initdb + pg_ctl for the PostgreSQL pass
  dovecot-core            # tests/support/dovecot.py: a throwaway IMAP server for the mail intake tests
  dovecot-imapd           # ... its IMAP protocol (IDLE, APPEND) the intake flow reads from
)

POLICY_RC_D="${ITILFLOW_POLICY_RC_D:-/usr/sbin/policy-rc.d}"
APT_LOCK_TIMEOUT="${ITILFLOW_APT_LOCK_TIMEOUT:-300}"

log() { printf 'install-test-deps: %s\n' "$*" >&2; }

if [ "$#" -gt 0 ]; then
  packages=("$@")
else
  packages=("${TEST_DEB_PACKAGES[@]}")
  # shellcheck disable=SC2206 # word splitting intended
  [ -n "${ITILFLOW_EXTRA_TEST_PACKAGES:-}" ] && packages+=(${ITILFLOW_EXTRA_TEST_PACKAGES})
fi

is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

missing_packages() {
  local pkg
  for pkg in "${packages[@]}"; do
    is_installed "$pkg" || printf '%s\n' "$pkg"
  done
}

if ! command -v dpkg-query >/dev/null 2>&1; then
  log "dpkg-query not found: this script supports Debian/Ubuntu only."
  log "Install these packages by other means: ${packages[*]}"
  exit 1
fi

mapfile -t missing < <(missing_packages)
if [ "${#missing[@]}" -eq 0 ]; then
  log "all test packages already installed: ${packages[*]}"
  exit 0
fi
log "missing: ${missing[*]}"

# --- privileges -------------------------------------------------------------------------------
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    log "not running as root and no passwordless sudo: cannot install ${missing[*]}."
    log "Run as root: sudo $0${*:+ $*}"
    log "  (or: sudo apt-get install --no-install-recommends ${missing[*]})"
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "apt-get not found; install by hand: ${missing[*]}"
  exit 1
fi
as_root() { "${SUDO[@]}" "$@"; }

# --- keep maintainer scripts from starting daemons ---------------------------------------------
policy_backup=""
policy_installed=0
restore_policy() {
  if [ "$policy_installed" -eq 1 ]; then
    if [ -n "$policy_backup" ]; then
      as_root mv -f "$policy_backup" "$POLICY_RC_D"
    else
      as_root rm -f "$POLICY_RC_D"
    fi
    policy_installed=0
  fi
}
trap restore_policy EXIT
trap 'exit 130' INT TERM

existing_policy_rc=0
if [ -x "$POLICY_RC_D" ]; then
  "$POLICY_RC_D" itilflow-probe start >/dev/null 2>&1 || existing_policy_rc=$?
fi
if [ "$existing_policy_rc" -ne 101 ]; then
  # No policy (or one that allows starts, e.g. exit 0): install ours for the duration.
  if [ -e "$POLICY_RC_D" ]; then
    policy_backup="$POLICY_RC_D.itilflow-backup"
    as_root cp -p "$POLICY_RC_D" "$policy_backup"
  fi
  printf '#!/bin/sh\n# installed by itilflow .ci/install-test-deps.sh; removed when it ends\nexit 101\n' |
    as_root tee "$POLICY_RC_D" >/dev/null
  as_root chmod 0755 "$POLICY_RC_D"
  policy_installed=1
fi

# --- install ----------------------------------------------------------------------------------
apt_get() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT" "$@"
}
log "apt-get update"
apt_get update -qq || log "apt-get update failed; trying the install anyway"
log "apt-get install ${missing[*]}"
apt_get install -y -q --no-install-recommends "${missing[@]}" || log "apt-get install failed"

# --- stop and disable services shipped by the new packages -------------------------------------
services_of() {
  # init scripts and (non-template) systemd units listed in the package's file list
  dpkg-query -L "$1" 2>/dev/null |
    sed -n -e 's#^/etc/init\.d/\([^/]*\)$#\1#p' \
      -e 's#^\(/usr\)\{0,1\}/lib/systemd/system/\([^/@]*\)\.service$#\2#p' |
    sort -u
}
for pkg in "${missing[@]}"; do
  is_installed "$pkg" || continue
  while IFS= read -r svc; do
    [ -n "$svc" ] || continue
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
      if systemctl is-enabled --quiet "$svc.service" 2>/dev/null ||
        systemctl is-active --quiet "$svc.service" 2>/dev/null; then
        log "disabling and stopping packaged service $svc (tests run their own instances)"
        as_root systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
      fi
    elif [ -x "/etc/init.d/$svc" ] && "/etc/init.d/$svc" status >/dev/null 2>&1; then
      log "stopping packaged service $svc (tests run their own instances)"
      as_root "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
  done < <(services_of "$pkg")
done

restore_policy

mapfile -t still_missing < <(missing_packages)
if [ "${#still_missing[@]}" -ne 0 ]; then
  log "still missing after install: ${still_missing[*]}"
  exit 1
fi
log "installed: ${missing[*]}"
