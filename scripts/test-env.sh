#!/usr/bin/env bash
# test-env.sh: make sure what jumpless's tests need is installed and running
# on this machine, reusing whatever already works. Idempotent; needs root
# (or passwordless sudo) to install; works without a TTY or stdin (CI).
#
#   - OpenSSH server binary /usr/sbin/sshd (tests start their own sshd)
#   - MariaDB on 127.0.0.1:3306, root@localhost with empty password, database `test`
#   - PostgreSQL on 127.0.0.1:5432, trust auth for 127.0.0.1, database `test`
#
# Quiet unless something fails: everything (apt-get, dpkg, initdb, the
# steps below) goes to a log file; on failure the log is printed, on success
# one line. TEST_ENV_VERBOSE=1 (or -v) prints everything as it happens.
set -euo pipefail
exec </dev/null
export DEBIAN_FRONTEND=noninteractive

if [ "${1:-}" = "-v" ]; then TEST_ENV_VERBOSE=1; fi
if [ "${TEST_ENV_VERBOSE:-0}" != 1 ]; then
  TEST_ENV_LOG="$(mktemp "${TMPDIR:-/tmp}/jumpless-test-env.XXXXXX")"
  exec 3>&1 4>&2 >"$TEST_ENV_LOG" 2>&1
  finish() {
    rc=$?
    exec 1>&3 2>&4
    if [ "$rc" -ne 0 ]; then
      printf 'test-env: FAILED (exit %s); log %s:\n' "$rc" "$TEST_ENV_LOG" >&2
      cat "$TEST_ENV_LOG" >&2
    else
      installed="$(sed -n 's/^test-env: apt-get install //p' "$TEST_ENV_LOG" | tr '\n' ' ')"
      printf 'test-env: ok: sshd, MariaDB 127.0.0.1:3306, PostgreSQL 127.0.0.1:5432%s\n' "${installed:+ (installed: ${installed% })}"
      rm -f "$TEST_ENV_LOG"
    fi
    exit "$rc"
  }
  trap finish EXIT
fi

log() { printf 'test-env: %s\n' "$*"; }
die() { printf 'test-env: ERROR: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  fi
fi
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif [ -n "$SUDO" ]; then $SUDO "$@"; else die "need root to run: $*"; fi; }

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    as_root apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

wait_for() { # wait_for <seconds> <command...>
  local n=$(( $1 * 5 )); shift
  for _ in $(seq "$n"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}

# ---------------------------------------------------------------- OpenSSH
if [ -x /usr/sbin/sshd ]; then
  log "sshd: present ($(/usr/sbin/sshd -V 2>&1 | head -n1 || true))"
else
  apt_install openssh-server
  [ -x /usr/sbin/sshd ] || die "openssh-server installed but /usr/sbin/sshd missing"
  log "sshd: installed"
fi
as_root mkdir -p /run/sshd
as_root chmod 0755 /run/sshd

# ---------------------------------------------------------------- MariaDB
mysql_ok() { mariadb -h127.0.0.1 -P3306 -uroot -e 'select 1' test; }
# The CLI tests run the mariadb client through the tunnel: make sure it is there.
command -v mariadb >/dev/null 2>&1 || apt_install mariadb-client
if command -v mariadb >/dev/null 2>&1 && mysql_ok >/dev/null 2>&1; then
  log "mariadb: running, root@127.0.0.1:3306/test ok"
else
  if [ ! -x /usr/sbin/mariadbd ]; then
    apt_install mariadb-server mariadb-client
  fi
  if ! mariadb -uroot -e 'select 1' >/dev/null 2>&1 && ! mariadb -h127.0.0.1 -uroot -e 'select 1' >/dev/null 2>&1; then
    log "mariadb: starting"
    as_root mkdir -p /run/mysqld
    as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
    if [ ! -d /var/lib/mysql/mysql ]; then
      as_root mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    if [ -x /etc/init.d/mariadb ]; then
      as_root /etc/init.d/mariadb start >/dev/null 2>&1 || true
    fi
    if ! wait_for 5 mariadb -uroot -e 'select 1'; then
      as_root start-stop-daemon --start --oknodo --background --chuid mysql \
        --exec /usr/sbin/mariadbd -- --user=mysql
    fi
    wait_for 60 mariadb -uroot -e 'select 1' || die "mariadb did not start"
  fi
  # root@localhost over TCP with an empty password, database test.
  # (Debian's root uses unix_socket auth; add mysql_native_password with an
  # empty password as an alternative so TCP logins work too.)
  as_root mariadb -uroot <<'SQL' >/dev/null 2>&1 || mariadb -h127.0.0.1 -uroot -e 'CREATE DATABASE IF NOT EXISTS test' >/dev/null
ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS test;
FLUSH PRIVILEGES;
SQL
  wait_for 10 mysql_ok || die "mariadb: root@127.0.0.1:3306/test with empty password does not work"
  log "mariadb: ready, root@127.0.0.1:3306/test ok"
fi

# ---------------------------------------------------------------- PostgreSQL
pg_ok() { psql -h 127.0.0.1 -p 5432 -U postgres -d test -Atc 'select 1'; }
# The CLI tests run psql through the tunnel: make sure it is there.
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
if command -v psql >/dev/null 2>&1 && pg_ok >/dev/null 2>&1; then
  log "postgresql: running, postgres@127.0.0.1:5432/test ok"
else
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql postgresql-client
  fi
  ver="$(ls /etc/postgresql | sort -V | tail -n1)"
  [ -n "$ver" ] || die "no PostgreSQL cluster in /etc/postgresql"
  hba="/etc/postgresql/$ver/main/pg_hba.conf"
  if ! grep -qE '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
    log "postgresql: enabling trust auth for 127.0.0.1 in $hba"
    as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    as_root sed -i '1i local all all trust' "$hba"
    restart=1
  else
    restart=0
  fi
  if ! as_root runuser -u postgres -- psql -Atc 'select 1' >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    log "postgresql: starting cluster $ver/main"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  elif [ "$restart" -eq 1 ]; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
  fi
  wait_for 60 pg_isready -h 127.0.0.1 -p 5432 -q || die "postgresql did not start on 127.0.0.1:5432"
  if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc "select 1 from pg_database where datname='test'" | grep -q 1; then
    log "postgresql: creating database test"
    psql -h 127.0.0.1 -U postgres -d postgres -c 'CREATE DATABASE test' >/dev/null
  fi
  wait_for 10 pg_ok || die "postgresql: postgres@127.0.0.1:5432/test with trust auth does not work"
  log "postgresql: ready, postgres@127.0.0.1:5432/test ok"
fi

# Password checks for the credential tests (dbauth): members of role
# jumpless_pw log in with scram-sha-256 on 127.0.0.1 (everyone else keeps
# trust), so that a wrong password is really refused.
hba_file="$(psql -h 127.0.0.1 -U postgres -d test -Atc 'show hba_file' 2>/dev/null || true)"
if [ -n "$hba_file" ] && ! as_root grep -qE '^host[[:space:]]+all[[:space:]]+\+jumpless_pw[[:space:]]' "$hba_file"; then
  log "postgresql: password auth for role jumpless_pw in $hba_file"
  as_root sed -i '1i host all +jumpless_pw 127.0.0.1/32 scram-sha-256' "$hba_file"
  psql -h 127.0.0.1 -U postgres -d test -Atc 'select pg_reload_conf()' >/dev/null
fi

log "ok"
