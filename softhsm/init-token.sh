#!/usr/bin/env bash
# Creates a SoftHSM2 token for estappliance under STATE_DIR (default var/):
#   STATE_DIR/softhsm2.conf, STATE_DIR/softhsm/tokens/, STATE_DIR/token.pin,
#   STATE_DIR/token.so-pin (both 0600, random). Does nothing if the token exists.
set -euo pipefail
state=${1:-var}
label=${2:-estappliance}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$state/softhsm/tokens"
state=$(cd "$state" && pwd)
conf="$state/softhsm2.conf"
sed "s|@TOKENDIR@|$state/softhsm/tokens|" "$here/softhsm2.conf.in" > "$conf"
export SOFTHSM2_CONF="$conf"
if softhsm2-util --show-slots 2>/dev/null | grep -Eq "^[[:space:]]*Label:[[:space:]]+$label[[:space:]]*$"; then
    exit 0
fi
umask 077
[ -s "$state/token.pin" ] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$state/token.pin"
[ -s "$state/token.so-pin" ] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$state/token.so-pin"
softhsm2-util --init-token --free --label "$label" \
    --pin "$(cat "$state/token.pin")" --so-pin "$(cat "$state/token.so-pin")" >/dev/null
echo "SoftHSM2 token '$label' created in $state/softhsm/tokens (PIN in $state/token.pin)"
