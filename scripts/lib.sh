# Shared by scripts/run and scripts/test: installs only what is missing, and builds.
# Sourced, not run.

set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# Builds live outside the clone so a fresh clone (and CI after a session) is incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/palisade/target}"
# Incremental caches of the workspace crates grew to about 20 GB beside 1.4 GB test
# binaries and filled the disk; the dependencies (most of the build) are never incremental.
export CARGO_INCREMENTAL=0
# cargo-leptos sets this when it builds the server; setting it for plain cargo too lets
# `cargo nextest` reuse that build instead of recompiling leptos.
export LEPTOS_OUTPUT_NAME=palisade
export PATH="$HOME/.cargo/bin:$PATH"

CARGO_LEPTOS_VERSION=0.3.8
# wasm-bindgen's CLI must be exactly the version in Cargo.lock.
WASM_BINDGEN_VERSION="$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')"

say() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_rust_tools() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  if ! cargo leptos --version 2>/dev/null | grep -q " $CARGO_LEPTOS_VERSION"; then
    say "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 20 minutes on two cores, once)"
    cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked
  fi
  if ! wasm-bindgen --version 2>/dev/null | grep -q " $WASM_BINDGEN_VERSION"; then
    say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --locked
  fi
}

ensure_browser_tools() {
  if [ ! -x /usr/bin/chromium ]; then
    say "installing Debian's chromium"
    as_root apt-get update
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y chromium
  fi
  if [ ! -d e2e/node_modules/@playwright/test ]; then
    say "installing the browser-test packages"
    # Playwright drives /usr/bin/chromium; it must not try to download a browser.
    (cd e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
  fi
}

# nginx is the gateway in the agent's end-to-end test (server/tests/agent_gateway.rs).
ensure_gateway_tools() {
  if [ ! -x /usr/sbin/nginx ]; then
    say "installing Debian's nginx"
    as_root apt-get update
    # Debian starts a packaged service on install; the test runs its own nginx, so keep
    # the packaged one from starting (unless the machine already has a policy).
    local policy_added=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
      as_root chmod +x /usr/sbin/policy-rc.d
      policy_added=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y nginx
    if [ -n "$policy_added" ]; then as_root rm -f /usr/sbin/policy-rc.d; fi
  fi
}

build_site() {
  say "building the server and the dashboard (cargo leptos build)"
  cargo leptos build
}
