#!/bin/sh
# A private CA, the broker's certificate and one client certificate per device, for mosquitto with
# require_certificate + use_identity_as_username (the certificate's CN is the MQTT user of the ACL).
#
#   make-certs.sh DIR SERVER_NAMES CLIENT...
#   make-certs.sh /etc/mosquitto/edge-verify mqtt.lan,192.0.2.10 front-cam front-door homeassistant
#
# SERVER_NAMES: comma-separated host names and IP addresses the devices use to reach the broker.
# An existing DIR/ca.key is reused, so clients can be added later. Keep ca.key offline if you can.
# Copy to each device only ca.crt, NAME.crt and NAME.key.
set -eu
if [ $# -lt 3 ]; then
    echo "usage: $0 DIR SERVER_NAMES CLIENT..." >&2
    exit 2
fi
dir=$1
names=$2
shift 2
umask 077
mkdir -p "$dir"
cd "$dir"
days=825

if [ ! -f ca.key ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt \
        -days 3650 -subj "/CN=edge-verify broker CA" 2>/dev/null
fi

sign() {  # sign NAME EXTENSIONS
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" \
        -out "$1.csr" -subj "/CN=$1" 2>/dev/null
    printf '%s\n' "$2" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

san=""
for n in $(echo "$names" | tr ',' ' '); do
    case $n in
        *[!0-9.:a-fA-F]*) san="$san,DNS:$n" ;;
        *) san="$san,IP:$n" ;;
    esac
done
sign server "subjectAltName=${san#,}
extendedKeyUsage=serverAuth"
for client in "$@"; do
    sign "$client" "extendedKeyUsage=clientAuth"
done
chmod 0644 ca.crt
echo "CA: $dir/ca.crt; broker: server.crt/server.key; clients: $*"
