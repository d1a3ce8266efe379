#!/usr/bin/env bash
# Install everything synthmix needs, idempotently: Debian data packages (when apt is there),
# a virtual environment with the package and its test tools. Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
DEB_PACKAGES=(dataset-fashion-mnist)
FASHION_MNIST=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

log() { printf '[setup] %s\n' "$*"; }

# 1. Debian packages: the offline datasets. Skipped when already present or without apt.
if [ ! -f "$FASHION_MNIST" ]; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then
            if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
                log "not root and no sudo: install ${DEB_PACKAGES[*]} yourself"; fi
        fi
        if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
            log "installing Debian packages: ${DEB_PACKAGES[*]}"
            $SUDO apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${DEB_PACKAGES[@]}"
        fi
    else
        log "apt-get not found: Fashion-MNIST must come from another source (see README, prepare.source)"
    fi
fi

# 2. Python environment. Re-installs only when pyproject.toml changed since the last run.
if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.synthmix-setup"
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || ! "$VENV/bin/python" -c "import synthmix" 2>/dev/null; then
    log "installing Python packages into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    touch "$STAMP"
else
    log "Python packages up to date"
fi
log "done"
