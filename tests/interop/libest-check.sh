#!/bin/bash
# libest-check.sh: runs Cisco libest's sample `estclient` against an EST server
# and judges each step by the files estclient writes (estclient exits 0 even
# when the operation failed).
#
# usage: libest-check.sh SERVER_HOST PORT CA_PEM USER PASSWORD_FILE WORKDIR
#
# Not part of `make test`: libest is in no package registry the build reaches,
# so bring your own estclient (libest 3.2.0 was used). Against `make run`:
#   ESTCLIENT=/path/to/estclient tests/interop/libest-check.sh 127.0.0.1 8443 \
#       var/ca/ca.pem demo var/demo.password /tmp/libest-work
#
# Environment:
#   ESTCLIENT  estclient binary (default: estclient on PATH)
#   EST_TIMEOUT  seconds estclient waits for an answer (-w; default 20)
#
# One line per step: "PASS step" or "FAIL step: <estclient's messages>".
# Full estclient output (-v: TLS, HTTP status and headers) is kept in
# WORKDIR/<step>/estclient.log. Exit status: number of failed steps (0 = all pass).
set -u

if [ $# -ne 6 ]; then
    echo "usage: $0 SERVER_HOST PORT CA_PEM USER PASSWORD_FILE WORKDIR" >&2
    exit 64
fi
HOST=$1 PORT=$2 CA=$3 USER_NAME=$4 PWFILE=$5 WORK=$6
ESTCLIENT=${ESTCLIENT:-estclient}
EST_TIMEOUT=${EST_TIMEOUT:-20}

command -v "$ESTCLIENT" >/dev/null || { echo "no estclient: set ESTCLIENT" >&2; exit 64; }
for f in "$CA" "$PWFILE"; do
    [ -e "$f" ] || { echo "missing: $f" >&2; exit 64; }
done
CA=$(readlink -f "$CA")
PASSWORD=$(tr -d '\r\n' < "$PWFILE")
mkdir -p "$WORK" && WORK=$(readlink -f "$WORK") || exit 64
export EST_OPENSSL_CACERT=$CA

FAILED=0

# estclient's messages worth showing for a failure: HTTP status lines,
# ERROR/WARNING log lines (less the usual "not using a client certificate"),
# and its closing "... failed with code N (EST_ERR_...)". Fallback: last lines.
messages() {
    local log=$1 out
    out=$(grep -aE 'HTTP status [0-9]+ received|\[ERROR\]|\[WARNING\]|failed with code|^Error|Unable to|rv = [0-9]+ \(EST_ERR' "$log" \
          | grep -av 'Not using client certificate for TLS session' \
          | sed -e 's/^\*\*\*EST //' -e 's/[[:space:]]*$//' | tail -n 6 | paste -sd'|' - | sed 's/|/ | /g')
    [ -n "$out" ] || out=$(grep -av '^[[:space:]]*$' "$log" | tail -n 3 | paste -sd'|' - | sed 's/|/ | /g')
    [ -n "$out" ] || out="(no output)"
    printf '%s' "$out"
}

pass() { echo "PASS $1${2:+ ($2)}"; }
fail() {
    local step=$1 why=$2 log=$WORK/$1/estclient.log
    FAILED=$((FAILED + 1))
    if [ -s "$log" ]; then
        echo "FAIL $step: $why; estclient: $(messages "$log")"
    else
        echo "FAIL $step: $why"
    fi
}

# run_est STEP ARGS...: estclient in WORK/STEP, output to WORK/STEP/estclient.log
run_est() {
    local step=$1; shift
    local dir=$WORK/$step
    rm -rf "$dir"; mkdir -p "$dir/out"
    # -v: verbose (HTTP status and headers); backtrace lines are dropped
    ( cd "$dir" && timeout $((EST_TIMEOUT + 30)) "$ESTCLIENT" -v -s "$HOST" -p "$PORT" -w "$EST_TIMEOUT" \
          -o "$dir/out" --pem-output "$@" ) 2>&1 \
        | grep -avE '^(/|\[0x)[^ ]*\(.*\) \[0x[0-9a-f]+\]$' > "$dir/estclient.log"
    echo "estclient -v -s $HOST -p $PORT -w $EST_TIMEOUT -o $dir/out --pem-output $(printf '%s ' "$@" | sed "s/$PASSWORD/<password>/g")" > "$dir/command"
}

pubkey_of_key()  { openssl pkey -in "$1" -pubout -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1; }
pubkey_of_cert() { openssl x509 -in "$1" -noout -pubkey 2>/dev/null | openssl pkey -pubin -pubout -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1; }
EMPTY_HASH=$(printf '' | sha256sum | cut -d' ' -f1)

# split_certs PEMFILE DIR: one file per certificate, DIR/c1.pem, c2.pem, ...
split_certs() {
    mkdir -p "$2"; rm -f "$2"/c*.pem
    awk -v d="$2" '/-----BEGIN CERTIFICATE-----/{n++; f=d "/c" n ".pem"; on=1} on{print > f} /-----END CERTIFICATE-----/{if (on) close(f); on=0}' "$1"
    ls "$2"/c*.pem 2>/dev/null | wc -l
}

# check_issued STEP [KEYFILE]: WORK/STEP/out/cert-0-0.pem holds a certificate
# that `openssl verify -CAfile CA` accepts (and, with KEYFILE, whose public key
# is KEYFILE's). Sets LEAF to the certificate file; on failure returns 1 with WHY set.
check_issued() {
    local out step=$1 key=${2:-} pem=$WORK/$1/out/cert-0-0.pem n c want
    LEAF="" WHY=""
    if [ ! -s "$pem" ]; then
        if ls "$WORK/$step/out/"cert-0-0.* >/dev/null 2>&1; then
            WHY="estclient wrote $(ls "$WORK/$step/out/" | paste -sd' ' -) but no PEM certificate"
        else
            WHY="no certificate written"
        fi
        return 1
    fi
    n=$(split_certs "$pem" "$WORK/$step/certs")
    [ "$n" -gt 0 ] || { WHY="cert-0-0.pem holds no certificate"; return 1; }
    if [ -n "$key" ]; then
        want=$(pubkey_of_key "$key")
        for c in "$WORK/$step/certs"/c*.pem; do
            [ "$(pubkey_of_cert "$c")" = "$want" ] && { LEAF=$c; break; }
        done
        [ -n "$LEAF" ] || { WHY="no certificate in cert-0-0.pem has the key $(basename "$key")'s public key"; return 1; }
    else
        LEAF=$WORK/$step/certs/c1.pem
    fi
    if ! out=$(openssl verify -CAfile "$CA" -untrusted "$pem" "$LEAF" 2>&1); then
        WHY="openssl verify -CAfile $CA refused it: $(echo "$out" | tail -n 2 | paste -sd' ' -)"
        return 1
    fi
    cp "$LEAF" "$WORK/$step/cert.pem"
    return 0
}

subject_of() { openssl x509 -in "$1" -noout -subject -nameopt RFC2253 2>/dev/null | sed 's/^subject=//'; }

KEYS=$WORK/keys
mkdir -p "$KEYS"
[ -s "$KEYS/ec-p256.key" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$KEYS/ec-p256.key" 2>/dev/null
[ -s "$KEYS/rsa2048.key" ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEYS/rsa2048.key" 2>/dev/null
[ -s "$KEYS/ec-pop.key" ]  || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$KEYS/ec-pop.key" 2>/dev/null
[ -s "$KEYS/ec-legacy.key" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$KEYS/ec-legacy.key" 2>/dev/null
[ -s "$KEYS/rsa-sskg.key" ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEYS/rsa-sskg.key" 2>/dev/null
TAG=libest-$(date +%s)

# 1. cacerts (-g): every certificate returned verifies against CA, and CA is among them
step=cacerts
run_est $step -g
pem=$WORK/$step/out/cacert-0-0.pem
if [ ! -s "$pem" ]; then
    fail $step "no cacert-0-0.pem written"
else
    n=$(split_certs "$pem" "$WORK/$step/certs"); bad=""; found=""
    cafp=$(openssl x509 -in "$CA" -noout -fingerprint -sha256)
    for c in "$WORK/$step/certs"/c*.pem; do
        openssl verify -CAfile "$CA" -untrusted "$pem" "$c" >/dev/null 2>&1 || bad="$bad $(subject_of "$c")"
        [ "$(openssl x509 -in "$c" -noout -fingerprint -sha256)" = "$cafp" ] && found=1
    done
    if [ "$n" -eq 0 ]; then fail $step "cacert-0-0.pem holds no certificate"
    elif [ -n "$bad" ]; then fail $step "openssl verify refused:$bad"
    elif [ -z "$found" ]; then fail $step "CA_PEM's certificate is not among the $n returned"
    else pass $step "$n certificate(s)"; fi
fi

# 2. simpleenroll, HTTP auth (Basic or whatever the server asks), EC P-256 key
step=enroll-ec-p256
run_est $step -e -u "$USER_NAME" -h "$PASSWORD" -x "$KEYS/ec-p256.key" --common-name "$TAG-ec"
if check_issued $step "$KEYS/ec-p256.key"; then pass $step "$(subject_of "$LEAF")"; else fail $step "$WHY"; fi
EC_CERT=$WORK/$step/cert.pem

# 3. simpleenroll, RSA 2048 key
step=enroll-rsa2048
run_est $step -e -u "$USER_NAME" -h "$PASSWORD" -x "$KEYS/rsa2048.key" --common-name "$TAG-rsa"
if check_issued $step "$KEYS/rsa2048.key"; then pass $step "$(subject_of "$LEAF")"; else fail $step "$WHY"; fi

# 4. simpleenroll with -z: challengePassword = tls-unique in the CSR (PoP binding)
step=enroll-pop-z
run_est $step -e -z -u "$USER_NAME" -h "$PASSWORD" -x "$KEYS/ec-pop.key" --common-name "$TAG-pop"
if check_issued $step "$KEYS/ec-pop.key"; then pass $step "$(subject_of "$LEAF")"; else fail $step "$WHY"; fi

# 5. simplereenroll authenticated by the TLS client certificate from step 2
# (if step 2 failed, a certificate for the same key is enrolled with curl and
# HTTP Basic instead, so that this step still tests certificate authentication)
step=reenroll-cert
via=""
if [ ! -s "$EC_CERT" ] && command -v curl >/dev/null; then
    fb=$WORK/reenroll-fallback; rm -rf "$fb"; mkdir -p "$fb"
    openssl req -new -key "$KEYS/ec-p256.key" -subj "/CN=$TAG-ec" -outform DER 2>/dev/null | base64 > "$fb/csr.b64"
    curl -sS --max-time 30 --cacert "$CA" -u "$USER_NAME:$PASSWORD" -H 'Content-Type: application/pkcs10' \
        --data-binary @"$fb/csr.b64" -o "$fb/resp" -w '%{http_code}\n' \
        "https://$HOST:$PORT/.well-known/est/simpleenroll" > "$fb/http_code" 2> "$fb/curl.err"
    base64 -d < "$fb/resp" 2>/dev/null | openssl pkcs7 -inform DER -print_certs 2>/dev/null > "$fb/certs.pem"
    if [ "$(split_certs "$fb/certs.pem" "$fb/certs")" -gt 0 ]; then
        for c in "$fb/certs"/c*.pem; do
            [ "$(pubkey_of_cert "$c")" = "$(pubkey_of_key "$KEYS/ec-p256.key")" ] && cp "$c" "$fb/cert.pem"
        done
    fi
    [ -s "$fb/cert.pem" ] && EC_CERT=$fb/cert.pem && via="with a certificate enrolled by curl+Basic since enroll-ec-p256 failed"
fi
if [ ! -s "$EC_CERT" ]; then
    rm -rf "$WORK/$step"
    fail $step "skipped: no certificate from enroll-ec-p256 (nor from curl: HTTP $(cat "$WORK/reenroll-fallback/http_code" 2>/dev/null)) to authenticate with"
else
    run_est $step -r -c "$EC_CERT" -k "$KEYS/ec-p256.key"
    if check_issued $step "$KEYS/ec-p256.key"; then
        old=$(openssl x509 -in "$EC_CERT" -noout -serial); new=$(openssl x509 -in "$LEAF" -noout -serial)
        if [ "$old" = "$new" ]; then fail $step "the server handed back the same certificate ($old)"
        else pass $step "$(subject_of "$LEAF"), new ${new}${via:+; $via}"; fi
    else fail $step "$WHY${via:+ ($via)}"; fi
fi

# 6. serverkeygen (-q): the CSR is signed with an RSA 2048 key; the server's key must match the certificate
step=serverkeygen-rsa
run_est $step -q -u "$USER_NAME" -h "$PASSWORD" -x "$KEYS/rsa-sskg.key" --common-name "$TAG-sskg"
keyf=$WORK/$step/out/key-0-0.key
if check_issued $step; then
    if [ ! -s "$keyf" ]; then
        fail $step "certificate issued but no key-0-0.key written"
    else
        # libest writes the key as it came: base64 of PKCS#8 DER with CRLF line breaks; try PEM, DER, base64 DER
        kp=$WORK/$step/server.key
        openssl pkey -in "$keyf" -out "$kp" 2>/dev/null \
          || openssl pkey -inform DER -in "$keyf" -out "$kp" 2>/dev/null \
          || { tr -d '\r\n \t' < "$keyf" | base64 -d > "$WORK/$step/key.der" 2>/dev/null && openssl pkey -inform DER -in "$WORK/$step/key.der" -out "$kp" 2>/dev/null; } \
          || rm -f "$kp"
        if [ ! -s "$kp" ]; then
            fail $step "key-0-0.key is not a private key openssl reads (PEM, DER or base64 DER): $(head -c 60 "$keyf" | tr -c '[:print:]' '.')"
        elif [ "$(pubkey_of_key "$kp")" != "$(pubkey_of_cert "$LEAF")" ]; then
            fail $step "the server-generated key does not match the certificate"
        else
            pass $step "$(subject_of "$LEAF"), $(openssl pkey -in "$kp" -noout -text 2>/dev/null | head -n 1)"
        fi
    fi
else
    fail $step "$WHY"
fi

# 7. simpleenroll under the CA label `legacy` (/.well-known/est/legacy/simpleenroll)
step=enroll-label-legacy
run_est $step -e --path-seg legacy -u "$USER_NAME" -h "$PASSWORD" -x "$KEYS/ec-legacy.key" --common-name "$TAG-legacy"
if check_issued $step "$KEYS/ec-legacy.key"; then pass $step "$(subject_of "$LEAF")"; else fail $step "$WHY"; fi

echo "libest-check: $((7 - FAILED)) passed, $FAILED failed (logs under $WORK/<step>/estclient.log)"
exit $FAILED
