#!/bin/sh
# Installs the Debian packages the test suite needs, when they are missing.
set -e
need=""
command -v swaks >/dev/null 2>&1 || need="$need swaks"
# Dovecot 2.3 (Debian bookworm) is the real IMAP server the IMAP intake tests run against.
{ command -v dovecot && command -v doveadm; } >/dev/null 2>&1 || need="$need dovecot-imapd"
[ -e /usr/lib/x86_64-linux-gnu/libmagic.so.1 ] || [ -e /usr/lib/aarch64-linux-gnu/libmagic.so.1 ] || need="$need libmagic1"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing packages:$need (install them with apt-get as root)" >&2
    exit 0
fi
echo "installing:$need"
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
