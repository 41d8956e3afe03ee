# Shared by scripts/run and scripts/test: install what Basalt needs on Debian.
# Sourced, not run.

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "error: '$*' needs root; run it as root or install sudo" >&2
    return 1
  fi
}

apt_updated=""
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $* is missing and this is not a Debian-like system: install it by hand" >&2
    return 1
  fi
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# PostgreSQL's server binaries (initdb, postgres) for the embedded default and tests.
ensure_postgres() {
  if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
    return 0
  fi
  echo "installing PostgreSQL's server package (apt-get install postgresql)"
  apt_install postgresql
}

# PostGIS for the GeoJSON test: Debian's package for the newest installed
# server. Optional: without it that test says SKIP.
ensure_postgis() {
  local major
  major=$(ls /usr/lib/postgresql/ 2>/dev/null | sort -n | tail -1)
  if [ -z "$major" ] || [ -f "/usr/share/postgresql/$major/extension/postgis.control" ]; then
    return 0
  fi
  apt_install "postgresql-$major-postgis-3" ||
    echo "warning: PostGIS could not be installed; the GeoJSON test will SKIP" >&2
}

ensure_command() { # ensure_command COMMAND DEBIAN_PACKAGE
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is missing: install the Rust toolchain (https://rustup.rs), Rust 1.85 or newer" >&2
    return 1
  fi
}

# A real S3-compatible server for the storage tests: s3s-fs, built once into
# a cache outside the checkout (about 2 minutes).
ensure_s3s_fs() {
  local root="${XDG_CACHE_HOME:-$HOME/.cache}/basalt-test-tools/s3s-fs"
  if command -v s3s-fs >/dev/null 2>&1 || [ -x "$root/bin/s3s-fs" ]; then
    return 0
  fi
  echo "installing s3s-fs (an S3-compatible server for the storage tests) into $root"
  cargo install s3s-fs@0.14.1 --features binary --locked --root "$root"
}

# Real JavaScript clients for the client tests (tests/js): Node.js from
# Debian, then the pinned packages of tests/js/package-lock.json.
ensure_js_clients() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  # npm records what it installed in node_modules/.package-lock.json.
  if [ tests/js/package-lock.json -nt tests/js/node_modules/.package-lock.json ]; then
    (cd tests/js && npm ci --no-audit --no-fund --silent)
  fi
}

# A real SMTP server for the auth email tests: aiosmtpd from Debian.
ensure_aiosmtpd() {
  if /usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
    return 0
  fi
  apt_install python3-aiosmtpd
}
