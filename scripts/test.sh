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

cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
