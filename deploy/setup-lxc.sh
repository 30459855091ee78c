#!/usr/bin/env bash
# Installs hpflow as a hardened systemd service on Debian 12: a Proxmox LXC
# container, a VM or a Raspberry Pi. Run it as root, inside the machine, from an
# unpacked hpflow source tree (it installs pipelines/, config/ and deploy/ from
# there). Safe to run again: it keeps edited config and existing credentials,
# replaces the binary and the unit, and restarts the service.
#
#   deploy/setup-lxc.sh --binary /root/hpflow                  # a prebuilt binary (pct push)
#   deploy/setup-lxc.sh --from-source --install-rust           # build it here
#   deploy/setup-lxc.sh --binary /root/hpflow --with-influxdb-grafana
#
# Credentials are generated into root-only files and never printed:
#   /etc/hpflow/hpflow.env   hpflow's environment (InfluxDB token, dashboard admin token)
#   /etc/hpflow/stack.env    InfluxDB and Grafana admin passwords (with --with-influxdb-grafana)
#
# docs/deployment.md explains each option and the Proxmox side (pct create, pct push).
set -euo pipefail

readonly PREFIX=/usr/local/bin
readonly CONF=/etc/hpflow
readonly DATA=/var/lib/hpflow
readonly INFLUXDATA_KEY_URL=https://repos.influxdata.com/influxdata-archive.key
readonly INFLUXDATA_KEY_FPR=24C975CBA61A024EE1B631787C3D57159FC2F927
readonly GRAFANA_KEY_URL=https://apt.grafana.com/gpg.key
readonly GRAFANA_KEY_FPR=B53AE77BADB630A683046005963FA27710458545

usage() {
    cat <<'EOF'
Usage: setup-lxc.sh [options]

Where the binary comes from (one of; neither keeps an installed /usr/local/bin/hpflow):
  --binary PATH             install this prebuilt hpflow binary
  --from-source             build it here with cargo from this source tree
  --install-rust            with --from-source: install Rust with rustup if cargo is missing

InfluxDB and Grafana on this machine (optional):
  --with-influxdb-grafana   install them from their vendors' Debian repositories, set up
                            the org, bucket, InfluxQL mapping, tokens and Grafana provisioning
  --compose                 with --with-influxdb-grafana: run them from docker-compose.yml
                            (Debian's docker.io) instead of packages

Service:
  --listen ADDR             address the dashboard (8080) and metrics (9464) listen on
                            (default 0.0.0.0: the whole network; 127.0.0.1 behind a proxy)
  --serial                  allow USB/serial adapters for Modbus RTU (systemd drop-in)
  --no-start                install everything but do not (re)start the service
  -h, --help                this text
EOF
}

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

binary=""
from_source=0
install_rust=0
with_stack=0
use_compose=0
listen=0.0.0.0
listen_given=0
serial=0
start=1

while [ "$#" -gt 0 ]; do
    case $1 in
        --binary)
            [ "$#" -ge 2 ] || die "--binary needs a path"
            binary=$2
            shift
            ;;
        --from-source) from_source=1 ;;
        --install-rust) install_rust=1 ;;
        --with-influxdb-grafana) with_stack=1 ;;
        --compose) use_compose=1 ;;
        --listen)
            [ "$#" -ge 2 ] || die "--listen needs an address"
            listen=$2
            listen_given=1
            shift
            ;;
        --serial) serial=1 ;;
        --no-start) start=0 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown option: $1"
            ;;
    esac
    shift
done

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

[ "$(id -u)" -eq 0 ] || die "run this as root (inside the container: pct enter <id>)"
[ -r /etc/debian_version ] || die "this script is for Debian (12 or later)"
command -v systemctl >/dev/null || die "systemd is required"
if [ ! -f "$src/pipelines/heatpump.toml" ] || [ ! -f "$src/deploy/hpflow.service" ]; then
    die "run this from an hpflow source tree (pipelines/ and deploy/ not found under $src)"
fi
[ -n "$binary" ] && [ "$from_source" -eq 1 ] && die "choose --binary or --from-source, not both"
[ "$use_compose" -eq 1 ] && [ "$with_stack" -eq 0 ] && die "--compose goes with --with-influxdb-grafana"
case $listen in
    *[!0-9a-fA-F.:]* | '') die "--listen wants an IP address such as 0.0.0.0 or 127.0.0.1" ;;
esac

# A 64-character hex secret from the kernel's CSPRNG (no openssl needed).
gen_secret() {
    od -An -vtx1 -N32 /dev/urandom | tr -d ' \n'
}

# Reads KEY's value from a KEY=value file (empty when absent).
get_var() {
    local file=$1 key=$2 line
    [ -f "$file" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        if [[ $line == "$key="* ]]; then
            printf '%s' "${line#"$key="}"
            return 0
        fi
    done <"$file"
}

# Sets KEY=value in a root-only file, replacing the line or appending one. Only
# shell builtins see the value, so it never shows up in the process list.
set_var() {
    local file=$1 key=$2 value=$3 tmp line found=0
    tmp=$(mktemp "$file.XXXXXX")
    if [ -f "$file" ]; then
        while IFS= read -r line || [ -n "$line" ]; do
            if [[ $line == "$key="* ]]; then
                printf '%s=%s\n' "$key" "$value"
                found=1
            else
                printf '%s\n' "$line"
            fi
        done <"$file" >"$tmp"
    fi
    [ "$found" -eq 1 ] || printf '%s=%s\n' "$key" "$value" >>"$tmp"
    chmod 0600 "$tmp"
    chown root:root "$tmp"
    mv -f "$tmp" "$file"
}

# Copies a file unless the target was edited: then the new one lands next to it
# as FILE.dist, as dpkg does.
install_config() {
    local from=$1 to=$2 mode=$3 group=$4
    if [ ! -e "$to" ]; then
        install -m "$mode" -o root -g "$group" "$from" "$to"
    elif ! cmp -s "$from" "$to"; then
        install -m "$mode" -o root -g "$group" "$from" "$to.dist"
        warn "$to differs from this version's; kept it, the new one is $to.dist"
    fi
}

apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

# Adds a vendor's apt repository after checking its signing key's fingerprint.
add_vendor_repo() {
    local name=$1 key_url=$2 fpr=$3 line=$4 tmp
    local keyring=/etc/apt/keyrings/$name.gpg
    if [ ! -s "$keyring" ]; then
        tmp=$(mktemp)
        curl -fsSL --proto '=https' "$key_url" -o "$tmp"
        if ! gpg --show-keys --with-colons "$tmp" 2>/dev/null | grep -q "^fpr:*$fpr:"; then
            rm -f "$tmp"
            die "the key at $key_url does not have the expected fingerprint $fpr"
        fi
        install -d -m 0755 /etc/apt/keyrings
        gpg --dearmor <"$tmp" >"$keyring"
        chmod 0644 "$keyring"
        rm -f "$tmp"
    fi
    printf 'deb [signed-by=%s] %s\n' "$keyring" "$line" >"/etc/apt/sources.list.d/$name.list"
}

wait_for_url() {
    local url=$1 seconds=$2 i
    for ((i = 0; i < seconds; i++)); do
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        sleep 1
    done
    return 1
}

# --- 1. the binary -------------------------------------------------------------
if [ -n "$binary" ]; then
    [ -f "$binary" ] || die "no such file: $binary"
    "$binary" --version >/dev/null 2>&1 || die "$binary does not run here (wrong architecture?)"
    say "installing $binary as $PREFIX/hpflow"
    install -m 0755 "$binary" "$PREFIX/hpflow.new"
    mv -f "$PREFIX/hpflow.new" "$PREFIX/hpflow"
elif [ "$from_source" -eq 1 ]; then
    apt_install build-essential pkg-config ca-certificates curl
    if ! command -v cargo >/dev/null; then
        # shellcheck source=/dev/null
        [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    fi
    if ! command -v cargo >/dev/null; then
        [ "$install_rust" -eq 1 ] ||
            die "cargo not found: install Rust (https://rustup.rs) or add --install-rust"
        say "installing Rust with rustup (minimal profile)"
        curl -fsSL --proto '=https' --tlsv1.2 https://sh.rustup.rs | sh -s -- -y --profile minimal
        # shellcheck source=/dev/null
        . "$HOME/.cargo/env"
    fi
    say "building hpflow (cargo build --release --locked)"
    cargo build --release --locked --bin hpflow --manifest-path "$src/Cargo.toml"
    install -m 0755 "$src/target/release/hpflow" "$PREFIX/hpflow.new"
    mv -f "$PREFIX/hpflow.new" "$PREFIX/hpflow"
elif [ ! -x "$PREFIX/hpflow" ]; then
    die "no hpflow installed yet: pass --binary PATH or --from-source"
fi
say "$("$PREFIX/hpflow" --version)"

# --- 2. user and folders -------------------------------------------------------
if ! getent passwd hpflow >/dev/null; then
    say "creating the system user hpflow"
    useradd --system --user-group --home-dir "$DATA" --no-create-home --shell /usr/sbin/nologin hpflow
fi
if [ "$serial" -eq 1 ]; then
    usermod -a -G dialout hpflow
fi
install -d -m 0750 -o root -g hpflow "$CONF" "$CONF/pipelines" "$CONF/config"
install -d -m 0750 -o hpflow -g hpflow "$DATA"

# --- 3. configuration (never overwriting an edited file) -----------------------
for f in "$src"/pipelines/*.toml; do
    install_config "$f" "$CONF/pipelines/$(basename "$f")" 0640 hpflow
done
for f in "$src"/config/*.yml; do
    install_config "$f" "$CONF/config/$(basename "$f")" 0640 hpflow
done

env_file=$CONF/hpflow.env
if [ ! -f "$env_file" ]; then
    say "writing $env_file"
    install -m 0600 -o root -g root "$src/deploy/hpflow.env.example" "$env_file"
    listen_given=1
fi
if [ "$listen_given" -eq 1 ]; then
    listen_hostport=$listen
    [[ $listen == *:* ]] && listen_hostport="[$listen]"
    set_var "$env_file" HPFLOW_DASHBOARD_ADDRESS "$listen_hostport:8080"
    set_var "$env_file" HPFLOW_METRICS_ADDRESS "$listen_hostport:9464"
fi
chmod 0600 "$env_file"
chown root:root "$env_file"
if [ -z "$(get_var "$env_file" HPFLOW_ADMIN_TOKEN)" ]; then
    set_var "$env_file" HPFLOW_ADMIN_TOKEN "$(gen_secret)"
fi
org=$(get_var "$env_file" INFLUXDB_ORG)
bucket=$(get_var "$env_file" INFLUXDB_BUCKET)
org=${org:-heatpump-monitoring}
bucket=${bucket:-heatpump-data}
case $org$bucket in
    *[!A-Za-z0-9._-]*) die "INFLUXDB_ORG and INFLUXDB_BUCKET in $env_file: letters, digits, '.', '_', '-' only" ;;
esac

# --- 4. InfluxDB and Grafana (optional) ----------------------------------------
stack_env=$CONF/stack.env
grafana_env=$CONF/grafana.env

ensure_stack_secrets() {
    [ -f "$stack_env" ] || install -m 0600 -o root -g root /dev/null "$stack_env"
    local v
    for v in INFLUXDB_ADMIN_PASSWORD INFLUXDB_TOKEN GRAFANA_ADMIN_PASSWORD; do
        [ -n "$(get_var "$stack_env" "$v")" ] || set_var "$stack_env" "$v" "$(gen_secret)"
    done
}

setup_with_packages() {
    apt_install ca-certificates curl gnupg
    add_vendor_repo influxdata "$INFLUXDATA_KEY_URL" "$INFLUXDATA_KEY_FPR" \
        "https://repos.influxdata.com/debian stable main"
    add_vendor_repo grafana "$GRAFANA_KEY_URL" "$GRAFANA_KEY_FPR" "https://apt.grafana.com stable main"
    apt-get update -qq
    apt_install influxdb2 influxdb2-cli grafana
    systemctl enable --now influxdb
    wait_for_url http://127.0.0.1:8086/health 60 || die "InfluxDB did not come up (journalctl -u influxdb)"

    local admin_token body
    admin_token=$(get_var "$stack_env" INFLUXDB_TOKEN)
    if curl -fsS http://127.0.0.1:8086/api/v2/setup | grep -q '"allowed": *true'; then
        say "setting up InfluxDB: org $org, bucket $bucket"
        body=$(mktemp)
        printf '{"username":"admin","password":"%s","org":"%s","bucket":"%s","token":"%s","retentionPeriodSeconds":0}' \
            "$(get_var "$stack_env" INFLUXDB_ADMIN_PASSWORD)" "$org" "$bucket" "$admin_token" >"$body"
        curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary "@$body" \
            http://127.0.0.1:8086/api/v2/setup || {
            rm -f "$body"
            die "InfluxDB setup failed"
        }
        rm -f "$body"
    fi

    # The influx CLI takes the token from the environment, not from argv.
    export INFLUX_HOST=http://127.0.0.1:8086 INFLUX_TOKEN=$admin_token
    local bucket_id
    if ! bucket_id=$(influx bucket list --org "$org" --name "$bucket" --hide-headers 2>/dev/null | cut -f 1) ||
        [ -z "$bucket_id" ]; then
        die "InfluxDB was already set up without the admin token in $stack_env: create the bucket" \
            "'$bucket' and a write token yourself and put it in $env_file as INFLUXDB_TOKEN"
    fi
    local mappings
    mappings=$(influx v1 dbrp list --org "$org" --db "$bucket")
    mappings=${mappings%%VIRTUAL DBRP MAPPINGS*} # a real mapping, not 2.1+'s virtual one
    if ! grep -q -- "$bucket_id" <<<"$mappings"; then
        say "mapping InfluxQL database $bucket (rp autogen) to the bucket, for Grafana"
        influx v1 dbrp create --org "$org" --bucket-id "$bucket_id" --db "$bucket" --rp autogen --default >/dev/null
    fi
    # Least privilege: hpflow may only write the bucket, Grafana only read it.
    if [ -z "$(get_var "$env_file" INFLUXDB_TOKEN)" ]; then
        say "creating a write-only InfluxDB token for hpflow"
        set_var "$env_file" INFLUXDB_TOKEN "$(influx auth create --org "$org" --write-bucket "$bucket_id" \
            --description hpflow --json | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' | head -n 1)"
    fi
    [ -f "$grafana_env" ] || install -m 0600 -o root -g root /dev/null "$grafana_env"
    if [ -z "$(get_var "$grafana_env" INFLUXDB_TOKEN)" ]; then
        say "creating a read-only InfluxDB token for Grafana"
        set_var "$grafana_env" INFLUXDB_TOKEN "$(influx auth create --org "$org" --read-bucket "$bucket_id" \
            --description grafana --json | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' | head -n 1)"
    fi
    unset INFLUX_TOKEN
    [ -n "$(get_var "$env_file" INFLUXDB_TOKEN)" ] || die "could not create hpflow's InfluxDB token"
    [ -n "$(get_var "$grafana_env" INFLUXDB_TOKEN)" ] || die "could not create Grafana's InfluxDB token"
    set_var "$env_file" INFLUXDB_URL http://127.0.0.1:8086
    set_var "$grafana_env" INFLUXDB_URL http://127.0.0.1:8086
    set_var "$grafana_env" INFLUXDB_ORG "$org"
    set_var "$grafana_env" INFLUXDB_BUCKET "$bucket"
    set_var "$grafana_env" GF_SECURITY_ADMIN_PASSWORD "$(get_var "$stack_env" GRAFANA_ADMIN_PASSWORD)"
    set_var "$grafana_env" GF_AUTH_ANONYMOUS_ENABLED false
    set_var "$grafana_env" GF_USERS_ALLOW_SIGN_UP false
    set_var "$grafana_env" GF_ANALYTICS_REPORTING_ENABLED false
    set_var "$grafana_env" GF_PLUGINS_PREINSTALL_DISABLED true

    # Grafana reads the tokens through systemd, from the root-only file.
    install -d -m 0755 /etc/systemd/system/grafana-server.service.d
    printf '[Service]\nEnvironmentFile=%s\n' "$grafana_env" >/etc/systemd/system/grafana-server.service.d/hpflow.conf

    # Provisioning from this tree: the data source and the dashboards.
    local f rel tmp
    if [ -d "$src/grafana/provisioning" ]; then
        tmp=$(mktemp)
        while IFS= read -r -d '' f; do
            rel=${f#"$src/grafana/provisioning/"}
            install -d -m 0755 "/etc/grafana/provisioning/$(dirname "$rel")"
            # The Compose stack reaches InfluxDB as "influxdb"; here it is local.
            sed 's#http://influxdb:8086#http://127.0.0.1:8086#g' "$f" >"$tmp"
            install_config "$tmp" "/etc/grafana/provisioning/$rel" 0640 grafana
        done < <(find "$src/grafana/provisioning" -type f -print0)
        rm -f "$tmp"
    fi
    if [ -d "$src/grafana/dashboards" ]; then
        install -d -m 0755 -o grafana -g grafana /var/lib/grafana/dashboards
        while IFS= read -r -d '' f; do
            install_config "$f" "/var/lib/grafana/dashboards/$(basename "$f")" 0644 grafana
        done < <(find "$src/grafana/dashboards" -type f -name '*.json' -print0)
    fi
    set_var "$grafana_env" GF_SERVER_HTTP_ADDR "$listen"
    systemctl daemon-reload
    systemctl enable grafana-server
    systemctl restart grafana-server
    # The admin password in the environment only applies to a new database; set it
    # explicitly too, from stdin, for a Grafana that had started before.
    if wait_for_url http://127.0.0.1:3000/api/health 60; then
        get_var "$stack_env" GRAFANA_ADMIN_PASSWORD |
            runuser -u grafana -- grafana-cli admin reset-admin-password --password-from-stdin >/dev/null 2>&1 ||
            warn "could not set Grafana's admin password; its user is admin, see $stack_env"
    else
        warn "Grafana did not answer on port 3000 (journalctl -u grafana-server)"
    fi
}

setup_with_compose() {
    apt_install docker.io docker-compose
    systemctl enable --now docker
    local compose_env=$CONF/compose.env v
    if [ ! -f "$compose_env" ]; then
        install -m 0600 -o root -g root "$src/.env.example" "$compose_env"
    fi
    for v in INFLUXDB_ADMIN_PASSWORD INFLUXDB_TOKEN GRAFANA_ADMIN_PASSWORD; do
        [ -n "$(get_var "$compose_env" "$v")" ] || set_var "$compose_env" "$v" "$(get_var "$stack_env" "$v")"
    done
    set_var "$compose_env" INFLUXDB_ORG "$org"
    set_var "$compose_env" INFLUXDB_BUCKET "$bucket"
    set_var "$compose_env" HPFLOW_BIND_ADDRESS "$listen"
    say "starting InfluxDB and Grafana with docker-compose (project hpflow, files in $src)"
    docker-compose --project-name hpflow --project-directory "$src" --env-file "$compose_env" \
        -f "$src/docker-compose.yml" up -d influxdb grafana
    # hpflow runs under systemd and reaches InfluxDB on the published port.
    set_var "$env_file" INFLUXDB_URL "http://127.0.0.1:$(get_var "$compose_env" INFLUXDB_PORT | grep . || echo 8086)"
    [ -n "$(get_var "$env_file" INFLUXDB_TOKEN)" ] ||
        set_var "$env_file" INFLUXDB_TOKEN "$(get_var "$compose_env" INFLUXDB_TOKEN)"
}

if [ "$with_stack" -eq 1 ]; then
    ensure_stack_secrets
    if [ "$use_compose" -eq 1 ]; then
        setup_with_compose
    else
        setup_with_packages
    fi
fi

# --- 5. the unit ---------------------------------------------------------------
say "installing hpflow.service"
install -m 0644 "$src/deploy/hpflow.service" /etc/systemd/system/hpflow.service
if [ "$serial" -eq 1 ]; then
    install -D -m 0644 "$src/deploy/hpflow-serial.conf" /etc/systemd/system/hpflow.service.d/serial.conf
fi
systemctl daemon-reload

# --- 6. validate as the service will run, then start ---------------------------
say "hpflow validate $CONF/pipelines/heatpump.toml"
if ! (
    set -a
    # shellcheck source=/dev/null
    . "$env_file"
    set +a
    export HPFLOW_DATA_DIR=$DATA
    runuser -u hpflow -- "$PREFIX/hpflow" validate "$CONF/pipelines/heatpump.toml"
); then
    die "the pipeline does not validate: fix the files named above, then run this again"
fi

systemctl enable hpflow >/dev/null 2>&1
if [ "$start" -eq 1 ]; then
    say "starting hpflow"
    systemctl restart hpflow
    metrics_host=$listen
    case $metrics_host in 0.0.0.0 | ::) metrics_host=127.0.0.1 ;; esac
    [[ $metrics_host == *:* ]] && metrics_host="[$metrics_host]"
    healthy=0
    for _ in $(seq 1 30); do
        if "$PREFIX/hpflow" healthcheck "http://$metrics_host:9464/metrics" --timeout 2s >/dev/null 2>&1; then
            healthy=1
            break
        fi
        sleep 1
    done
    [ "$healthy" -eq 1 ] || warn "hpflow does not answer yet: systemctl status hpflow; journalctl -u hpflow"
fi

# --- 7. where things are -------------------------------------------------------
host=$listen
case $host in 0.0.0.0 | ::) host=$(hostname -I 2>/dev/null | awk '{print $1}') ;; esac
host=${host:-127.0.0.1}
[[ $host == *:* ]] && host="[$host]"
echo
echo "hpflow is installed."
echo "  Dashboard   http://$host:8080/"
echo "  Prometheus  http://$host:9464/metrics"
if [ "$with_stack" -eq 1 ]; then
    echo "  Grafana     http://$host:3000/   (user admin)"
    echo "  InfluxDB    http://127.0.0.1:8086/ (from this machine; user admin)"
fi
echo
echo "Credentials (root-only, not shown here):"
echo "  $env_file    INFLUXDB_TOKEN, HPFLOW_ADMIN_TOKEN (dashboard settings)"
if [ "$with_stack" -eq 1 ]; then
    echo "  $stack_env     InfluxDB and Grafana admin passwords"
fi
echo
echo "Next: put your heat pumps in $CONF/config/heatpumps.yml, then"
echo "  hpflow validate $CONF/pipelines/heatpump.toml && systemctl restart hpflow"
echo "Logs: journalctl -u hpflow -f"
