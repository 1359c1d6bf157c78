#!/usr/bin/env bash
# Generates the TLS test certificates for qfetch's integration tests (openssl CLI only, ECDSA P-256).
# Usage: tests/gen_certs.sh OUTDIR
# Idempotent: when every output exists (made by this version of the script, server.pem not about
# to expire) it does nothing; otherwise it regenerates all of them in a scratch directory and moves
# them into OUTDIR together, so the set is always consistent.
#
#   ca.pem ca.key                test CA (the only one tests trust)
#   server.pem server.key        signed by ca: DNS:localhost IP:127.0.0.1 DNS:query1.finance.yahoo.com
#   expired.pem expired.key      signed by ca, valid 2020-01-01 .. 2020-01-02
#   notyet.pem notyet.key        signed by ca, valid 2099-01-01 .. 2099-12-31
#   wronghost.pem wronghost.key  signed by ca, SAN DNS:wrong.example only
#   selfsigned.pem selfsigned.key  self-signed, CN/SAN localhost + 127.0.0.1
#   untrusted.pem untrusted.key  signed by ca2 (not in ca.pem), SAN localhost + 127.0.0.1
#   ca2.pem                      that second CA, kept for debugging
#   notpem.pem                   a file that is not PEM
#   inter.pem inter.key          intermediate CA, signed by ca (CA:TRUE, pathlen 0)
#   chainleaf.pem chainleaf.key  signed by inter, localhost + 127.0.0.1; the file holds the leaf
#                                only, so a server using it omits the intermediate
#   chainfull.pem chainfull.key  the same leaf followed by inter.pem (a complete chain)
#   ca.der                       ca.pem in DER form (a certificate that is not PEM)
#   keyonly.pem                  a PEM file holding only a private key, no certificate
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
out=$1
outputs="ca.pem ca.key server.pem server.key expired.pem expired.key notyet.pem notyet.key
wronghost.pem wronghost.key selfsigned.pem selfsigned.key untrusted.pem untrusted.key ca2.pem
notpem.pem inter.pem inter.key chainleaf.pem chainleaf.key chainfull.pem chainfull.key ca.der
keyonly.pem"

# The stamp records which version of this script made the set: a changed recipe regenerates.
sum=$(cksum <"$0" | cut -d' ' -f1)
complete=1
for f in $outputs; do
    [ -s "$out/$f" ] || complete=0
done
[ "$(cat "$out/.gen_certs.sum" 2>/dev/null)" = "$sum" ] || complete=0
# The good certificate must still be valid for a day.
openssl x509 -checkend 86400 -noout -in "$out/server.pem" >/dev/null 2>&1 || complete=0
[ $complete -eq 1 ] && exit 0

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/qfetch-certs.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

newkey() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# A self-signed CA: $1 = basename, $2 = CN.
make_ca() {
    newkey "$1.key"
    openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 3650 -sha256 -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>/dev/null
}

# Leaf certificates go through `openssl ca`, the one OpenSSL 3.0 tool that takes an explicit
# -startdate/-enddate, so expired and not-yet-valid certificates need no faked clock.
# $1 = basename, $2 = signing CA basename, $3 = CN, $4 = SAN list, $5 = start, $6 = end.
make_leaf() {
    local name=$1 ca=$2 cn=$3 san=$4 start=$5 end=$6 db="db-$2"
    mkdir -p "$db"
    [ -f "$db/index.txt" ] || : >"$db/index.txt"
    [ -f "$db/serial" ] || echo 1000 >"$db/serial"
    cat >"$name.cnf" <<EOF
[ca]
default_ca = testca
[testca]
dir = $work/$db
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
certificate = $work/$ca.pem
private_key = $work/$ca.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
x509_extensions = leaf_ext
[anything]
commonName = supplied
[leaf_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $san
EOF
    newkey "$name.key"
    openssl req -new -key "$name.key" -out "$name.csr" -subj "/CN=$cn" 2>/dev/null
    openssl ca -batch -notext -config "$name.cnf" -in "$name.csr" -out "$name.pem" \
        -startdate "$start" -enddate "$end" >/dev/null 2>&1 || {
        echo "gen_certs: openssl ca failed for $name" >&2
        openssl ca -batch -notext -config "$name.cnf" -in "$name.csr" -out "$name.pem" \
            -startdate "$start" -enddate "$end" >&2 || true
        exit 1
    }
}

# Valid from yesterday so clock skew between steps never matters.
now_start=$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)
now_end=$(date -u -d '+800 days' +%Y%m%d%H%M%SZ)
local_san="DNS:localhost,IP:127.0.0.1"

make_ca ca "qfetch test CA"
make_ca ca2 "qfetch untrusted CA"
make_leaf server ca localhost "DNS:localhost,IP:127.0.0.1,DNS:query1.finance.yahoo.com" \
    "$now_start" "$now_end"
make_leaf expired ca localhost "$local_san" 20200101000000Z 20200102000000Z
make_leaf notyet ca localhost "$local_san" 20990101000000Z 20991231000000Z
make_leaf wronghost ca wrong.example "DNS:wrong.example" "$now_start" "$now_end"
make_leaf untrusted ca2 localhost "$local_san" "$now_start" "$now_end"

newkey selfsigned.key
openssl req -x509 -new -key selfsigned.key -out selfsigned.pem -days 825 -sha256 -subj "/CN=localhost" \
    -addext "subjectAltName=$local_san" -addext "basicConstraints=critical,CA:FALSE" \
    -addext "extendedKeyUsage=serverAuth" 2>/dev/null

printf 'this is not a PEM file\nit has no BEGIN line at all\n' >notpem.pem

# An intermediate CA under ca, and a leaf it signs; chainfull.pem appends the intermediate.
newkey inter.key
openssl req -new -key inter.key -out inter.csr -subj "/CN=qfetch test intermediate CA" 2>/dev/null
printf '%s\n' "basicConstraints = critical,CA:TRUE,pathlen:0" \
    "keyUsage = critical,keyCertSign,cRLSign" "subjectKeyIdentifier = hash" \
    "authorityKeyIdentifier = keyid" >inter.ext
openssl x509 -req -in inter.csr -CA ca.pem -CAkey ca.key -set_serial 4096 -out inter.pem \
    -days 1000 -sha256 -extfile inter.ext 2>/dev/null
make_leaf chainleaf inter localhost "$local_san" "$now_start" "$now_end"
cat chainleaf.pem inter.pem >chainfull.pem
cp chainleaf.key chainfull.key
openssl x509 -in ca.pem -outform DER -out ca.der
cp inter.key keyonly.pem

# Sanity: the good certificate verifies, the bad ones fail the way their names say.
openssl verify -CAfile ca.pem server.pem >/dev/null
openssl verify -CAfile ca.pem expired.pem >/dev/null 2>&1 && { echo "gen_certs: expired.pem verifies" >&2; exit 1; }
openssl verify -CAfile ca.pem notyet.pem >/dev/null 2>&1 && { echo "gen_certs: notyet.pem verifies" >&2; exit 1; }
openssl verify -CAfile ca.pem untrusted.pem >/dev/null 2>&1 && { echo "gen_certs: untrusted.pem verifies" >&2; exit 1; }
openssl verify -CAfile ca.pem chainleaf.pem >/dev/null 2>&1 && { echo "gen_certs: chainleaf.pem verifies without its intermediate" >&2; exit 1; }
openssl verify -CAfile ca.pem -untrusted inter.pem chainleaf.pem >/dev/null

chmod 600 ./*.key
for f in $outputs; do
    mv -f "$f" "$out/$f"
done
echo "$sum" >"$out/.gen_certs.sum"
exit 0
