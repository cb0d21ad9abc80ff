#!/bin/sh
# Installs the Debian 12 packages that softpipe's build, tests and benchmarks need.
# Idempotent: installs only what is missing; runs `apt-get update` only when needed. Runs as root
# (or through sudo when available).
set -eu

PKGS="
build-essential cmake pkg-config git ca-certificates
libjpeg62-turbo-dev libpng-dev libxxhash-dev libssl-dev libjansson-dev
libcmocka-dev libyaml-dev libcurl4-openssl-dev
nginx
clang libclang-rt-14-dev clang-format
python3 python3-dev python3-numpy python3-pytest python3-pil python3-sklearn python3-xgboost
python3-torch python3-torchvision libturbojpeg0-dev
tar coreutils
"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install-deps: need root to install:$missing" >&2
        exit 3
    fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing:$missing"
if ! $SUDO apt-get install -y --no-install-recommends $missing; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends $missing
fi
