#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine (as root) or a developer's
# checkout: installs the host packages kiln needs, then runs formatting and
# lint checks and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

# A clean clone (CI) gains nothing from incremental compilation but its disk.
if [ "${CI:-}" = true ]; then
    export CARGO_INCREMENTAL=0
fi

step "building kiln"
cargo build --workspace --all-targets --locked

step "host tools (kiln doctor --fix) and test tools"
if [ "$(id -u)" = 0 ]; then
    ./target/debug/kiln doctor --fix --yes
    # What the tests use to inspect images: a static busybox for sandbox
    # trees, xattr/capability tools, and the compressors' CLIs; and the
    # PostgreSQL server the hub's tests start on a loopback port; minisign
    # and curl, with which the device recipe of docs/channels.md checks and
    # fetches a channel; chromium, the browser of the web UI's test; QEMU
    # and OVMF, which boot the ISOs under BIOS and UEFI.
    need=()
    for p in busybox-static attr libcap2-bin zstd xz-utils gzip tar python3 python3-venv postgresql postgresql-client \
        minisign curl chromium qemu-system-x86 ovmf; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
    fi
else
    ./target/debug/kiln doctor || echo "warning: some host tools are missing; run as root to install them" >&2
fi

# The S3-compatible server the store's tests run against: moto_server, from
# PyPI, in a virtual environment under target/ (unless one on PATH runs: a
# pyenv shim may be there without moto behind it).
if ! moto_server --help >/dev/null 2>&1; then
    step "moto_server (PyPI) for the S3 store tests"
    if [ ! -x target/test-venv/bin/moto_server ]; then
        python3 -m venv target/test-venv
        target/test-venv/bin/pip install --quiet 'moto[server]'
    fi
    export PATH="$PWD/target/test-venv/bin:$PATH"
fi
# schemathesis, which fuzzes the hub's API from its OpenAPI document, in the
# same virtual environment (the test looks there).
if [ ! -x target/test-venv/bin/schemathesis ]; then
    step "schemathesis (PyPI) for the hub's API fuzzing test"
    [ -x target/test-venv/bin/pip ] || python3 -m venv target/test-venv
    target/test-venv/bin/pip install --quiet 'schemathesis>=4,<5'
fi
# Playwright and axe-core (PyPI) for the web UI's browser test, which runs
# Debian's chromium (browsers are not downloaded).
if ! target/test-venv/bin/python -c 'import playwright, axe_playwright_python' 2>/dev/null; then
    step "Playwright and axe (PyPI) for the web UI's browser test"
    [ -x target/test-venv/bin/pip ] || python3 -m venv target/test-venv
    target/test-venv/bin/pip install --quiet 'playwright>=1.40,<2' 'axe-playwright-python>=0.1.4,<0.2'
fi

# The real koji client (koji 1.36.1 from PyPI) for the Koji protocol tests.
# Without its optional Kerberos dependency (requests-gssapi builds against
# Kerberos headers): the tests log in with passwords.
if ! target/test-venv/bin/python -c 'import koji, koji_cli, requests, dateutil, defusedxml' 2>/dev/null \
    || [ "$(target/test-venv/bin/python -c 'import koji; print(koji.__version__)')" != 1.36.1 ]; then
    step "the koji client (PyPI) for the Koji protocol tests"
    [ -x target/test-venv/bin/pip ] || python3 -m venv target/test-venv
    target/test-venv/bin/pip install --quiet --no-deps 'koji==1.36.1'
    target/test-venv/bin/pip install --quiet requests python-dateutil six defusedxml
fi

step "formatting"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "size rules"
python3 tools/sizes.py

step "tests"
# Shared fixtures live under target/tmp, one directory per test run; drop the
# ones earlier runs left behind (a built image and its stage cache each).
rm -rf target/tmp/build-fixture-* target/tmp/update-sources-* target/tmp/iso-fixture-* target/tmp/cache-*
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi
