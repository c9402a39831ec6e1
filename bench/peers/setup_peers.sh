#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Creates the virtual environment of the peer helpdesks (Roundup, django-helpdesk) that
# bench/peers/peer_bench.py compares casemail with, and installs the pinned versions of
# requirements.txt into it.
#
# The environment lives outside the repository, so that nothing of the peers is ever committed or
# importable by casemail's own code and tests:
#   CASEMAIL_PEERS_VENV  where it is made (default: ~/.cache/casemail-bench/peers-venv)
#   PYTHON               the interpreter it is made from (default: python3); peer_bench.py passes
#                        the interpreter of casemail's own environment, so both run on one Python.
#
# Running it again is cheap: the environment is reused when it already holds exactly these pins.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
venv=${CASEMAIL_PEERS_VENV:-$HOME/.cache/casemail-bench/peers-venv}
python=${PYTHON:-python3}
stamp="$venv/.casemail-peers-requirements.txt"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$here/requirements.txt" "$stamp"; then
    echo "peers venv ready: $venv"
    exit 0
fi

mkdir -p "$(dirname "$venv")"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
# --no-deps with the full pinned list: what is installed is exactly the list, nothing resolved anew.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$here/requirements.txt"
# The stamp is written last, so an interrupted install is redone on the next run.
cp "$here/requirements.txt" "$stamp"
echo "peers venv ready: $venv"
