#!/bin/sh
# The placement webhook on a cluster WITHOUT cert-manager: a CA and a serving certificate made here with
# openssl, the Secret written with kubectl, the CA patched into the MutatingWebhookConfiguration.
#
#   bootstrap.sh render    print deploy/webhook without its cert-manager objects (review it, or commit it)
#   bootstrap.sh install   apply that, then do `certs`
#   bootstrap.sh certs     a new CA and serving certificate; caBundle patched, then the Secret replaced
#
# !!! THE CERTIFICATE EXPIRES after $DAYS days (default 365) and NOTHING RENEWS IT. !!!
# Re-run `bootstrap.sh certs` before then, e.g. every few months. After expiry the API server cannot
# talk to the webhook: pods are still created (failurePolicy: Ignore) but no longer placed. The webhook
# exports the expiry as placement_webhook_certificate_not_after_seconds: alert on it.
#
# A re-run is safe while the webhook serves: the caBundle first gets the new CA *and* the one it had
# before, then the Secret is replaced; the pods pick the new certificate up within a minute or two
# (kubelet volume sync, then the webhook's 10 s poll) and are trusted throughout. The next re-run drops
# the older CA. The CA's private key is deleted when the script ends: it is not kept anywhere.
#
# Environment (defaults in brackets):
#   NAMESPACE [placement-system]  SERVICE [placement-webhook]  SECRET [placement-webhook-tls]
#   WEBHOOK_CONFIG [placement-webhook]  DAYS [365]  KUBECTL [kubectl]  OPENSSL [openssl]
#   KUSTOMIZATION [deploy/webhook]
# NAMESPACE and SERVICE are for `certs` in an overlay of your own; `render` and `install` use the base
# as it is (namespace placement-system), or KUSTOMIZATION: an overlay of yours over it, e.g. one that adds
# the NetworkPolicy component (deploy/webhook/network-policy); its cert-manager objects are dropped too.
#
# Needs: kubectl (1.27 or later: server-side apply, built-in kustomize), openssl 1.1.1 or later, awk.
set -eu

NAMESPACE=${NAMESPACE:-placement-system}
SERVICE=${SERVICE:-placement-webhook}
SECRET=${SECRET:-placement-webhook-tls}
WEBHOOK_CONFIG=${WEBHOOK_CONFIG:-placement-webhook}
DAYS=${DAYS:-365}
KUBECTL=${KUBECTL:-kubectl}
OPENSSL=${OPENSSL:-openssl}

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
base=${KUSTOMIZATION:-$(dirname -- "$here")}

die() {
    printf 'bootstrap.sh: %s\n' "$*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found (set ${2:-} to its path)"
}

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

# The base (or KUSTOMIZATION) without cert-manager objects and without the cainjector annotation.
render() {
    need "$KUBECTL" KUBECTL
    "$KUBECTL" kustomize "$base" | awk '
        function flush() {
            if (doc != "" && !drop) { printf "%s%s", sep, doc; sep = "---\n" }
            doc = ""; drop = 0; held = ""
        }
        /^---$/ { flush(); next }
        /^apiVersion: cert-manager\.io\// { drop = 1 }
        /^  annotations:$/ { held = $0; next }
        held != "" {
            if ($0 ~ /^    cert-manager\.io\/inject-ca-from:/) next
            if ($0 ~ /^    /) doc = doc held "\n"
            held = ""
        }
        { doc = doc $0 "\n" }
        END { flush() }
    '
}

certs() {
    need "$KUBECTL" KUBECTL
    need "$OPENSSL" OPENSSL
    case $DAYS in
        '' | *[!0-9]* | 0) die "DAYS must be a positive number of days, not '$DAYS'" ;;
    esac
    "$KUBECTL" get namespace "$NAMESPACE" >/dev/null ||
        die "namespace $NAMESPACE not found: run 'bootstrap.sh install' (or apply the manifests) first"
    names=$("$KUBECTL" get mutatingwebhookconfiguration "$WEBHOOK_CONFIG" \
        -o jsonpath='{range .webhooks[*]}{.name}{"\n"}{end}') ||
        die "MutatingWebhookConfiguration $WEBHOOK_CONFIG not found: run 'bootstrap.sh install' first"
    count=$(printf '%s\n' "$names" | grep -c .) || die "$WEBHOOK_CONFIG has no webhooks"

    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    trap 'exit 1' HUP INT TERM
    dns="$SERVICE.$NAMESPACE.svc"

    cat >"$tmp/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:$dns, DNS:$dns.cluster.local
EOF
    # EC P-256 keys (PKCS#8 PEM). The CA outlives the serving certificate by a day.
    "$OPENSSL" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/ca.key" 2>/dev/null
    "$OPENSSL" req -x509 -new -key "$tmp/ca.key" -sha256 -days $((DAYS + 1)) \
        -subj "/CN=$SERVICE-ca $(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        -config "$tmp/openssl.cnf" -extensions ca -out "$tmp/ca.crt"
    "$OPENSSL" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/tls.key" 2>/dev/null
    "$OPENSSL" req -new -key "$tmp/tls.key" -subj "/CN=$dns" -config "$tmp/openssl.cnf" -out "$tmp/tls.csr"
    "$OPENSSL" x509 -req -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
        -set_serial "0x$("$OPENSSL" rand -hex 16)" -sha256 -days "$DAYS" \
        -extfile "$tmp/openssl.cnf" -extensions server -out "$tmp/tls.crt" 2>/dev/null
    "$OPENSSL" verify -CAfile "$tmp/ca.crt" "$tmp/tls.crt" >/dev/null || die "the new certificate does not verify"
    rm -f "$tmp/ca.key" "$tmp/tls.csr"

    # caBundle: the new CA, plus the first CA of the current bundle while it is still valid, so that the
    # pods' current certificate stays trusted until they have loaded the new one.
    cp "$tmp/ca.crt" "$tmp/bundle.pem"
    old=$("$KUBECTL" get mutatingwebhookconfiguration "$WEBHOOK_CONFIG" -o jsonpath='{.webhooks[0].clientConfig.caBundle}')
    if [ -n "$old" ]; then
        printf '%s\n' "$old" | "$OPENSSL" base64 -d -A >"$tmp/old.pem" || die "the current caBundle is not base64"
        awk '/-----BEGIN CERTIFICATE-----/ { n++ } n == 1 { print } /-----END CERTIFICATE-----/ && n == 1 { exit }' \
            "$tmp/old.pem" >"$tmp/old-first.pem"
        if [ -s "$tmp/old-first.pem" ] && "$OPENSSL" x509 -in "$tmp/old-first.pem" -noout -checkend 0 >/dev/null 2>&1; then
            cat "$tmp/old-first.pem" >>"$tmp/bundle.pem"
        fi
    fi
    bundle=$("$OPENSSL" base64 -A <"$tmp/bundle.pem")
    patch='['
    i=0
    while [ "$i" -lt "$count" ]; do
        [ "$i" -gt 0 ] && patch="$patch,"
        patch="$patch{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$bundle\"}"
        i=$((i + 1))
    done
    patch="$patch]"
    "$KUBECTL" patch mutatingwebhookconfiguration "$WEBHOOK_CONFIG" --type=json -p "$patch" >/dev/null
    echo "caBundle of MutatingWebhookConfiguration $WEBHOOK_CONFIG updated ($count webhook(s))"

    # Server-side apply: idempotent, and unlike client-side apply it keeps no copy of the key in an
    # annotation.
    "$KUBECTL" -n "$NAMESPACE" create secret generic "$SECRET" --type=kubernetes.io/tls \
        --from-file=tls.crt="$tmp/tls.crt" --from-file=tls.key="$tmp/tls.key" --from-file=ca.crt="$tmp/ca.crt" \
        --dry-run=client -o yaml |
        "$KUBECTL" apply --server-side --force-conflicts --field-manager=placement-bootstrap -f - >/dev/null
    echo "Secret $NAMESPACE/$SECRET written for $dns"

    expiry=$("$OPENSSL" x509 -in "$tmp/tls.crt" -noout -enddate | sed 's/^notAfter=//')
    echo
    echo "THE SERVING CERTIFICATE EXPIRES ON $expiry."
    echo "Re-run '$0 certs' before then; nothing renews it automatically."
}

[ $# -eq 1 ] || usage
case $1 in
    render) render ;;
    install)
        render | "$KUBECTL" apply -f -
        certs
        ;;
    certs) certs ;;
    *) usage ;;
esac
