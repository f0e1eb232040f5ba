#!/usr/bin/env bash
# Make sure PostgreSQL, Redis and RabbitMQ answer on 127.0.0.1 for the test suite (use the
# running servers, start stopped ones, install absent ones from Debian packages) and that wrk and
# Chromium are there. For development and CI machines only: it installs packages and edits
# pg_hba.conf.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}
wait_for() {  # wait_for NAME CHECK...
  local name=$1; shift
  for _ in $(seq 1 "${WAIT_TRIES:-60}"); do "$@" && return 0; sleep 0.5; done
  echo "ensure-services: $name did not come up" >&2; return 1
}

pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_ready() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
rabbitmq_ready() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if ! pg_ready; then
  if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    echo "ensure-services: installing PostgreSQL" >&2
    apt_install postgresql
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  # Tests connect as postgres over TCP without a password, as on the CI machines.
  if ! grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
    as_root sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || \
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  wait_for PostgreSQL pg_ready
fi

if ! redis_ready; then
  if ! command -v redis-server >/dev/null; then
    echo "ensure-services: installing Redis" >&2
    apt_install redis-server
  fi
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis_ready
fi
if ! rabbitmq_ready; then
  if ! command -v rabbitmq-server >/dev/null; then
    echo "ensure-services: installing RabbitMQ" >&2
    apt_install rabbitmq-server
  fi
  # The Debian package's own service may not run here (no systemd): start the node directly.
  # guest/guest may log in from loopback only, which is all the tests need.
  as_root rabbitmq-server -detached
  WAIT_TRIES=240 wait_for RabbitMQ rabbitmq_ready  # a first boot takes a while
fi
# The load generator of the benchmarks (their smoke run is part of the suite).
if ! command -v wrk >/dev/null; then
  echo "ensure-services: installing wrk" >&2
  apt_install wrk
fi
# The browser of the end-to-end tests (tests/e2e/test_browser.py drives it with Playwright):
# Debian's own build, since Playwright's browser download cannot be reached from CI.
if [ ! -x /usr/bin/chromium ]; then
  echo "ensure-services: installing Chromium" >&2
  apt_install chromium
fi
echo "ensure-services: PostgreSQL, Redis and RabbitMQ are up, wrk and Chromium are installed" >&2
