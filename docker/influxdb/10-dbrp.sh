#!/bin/bash
# Maps the InfluxQL database "<bucket>" (retention policy "autogen", the default)
# to the InfluxDB 2 bucket, so Grafana's InfluxQL data source and HPManager-style
# panels can query it. InfluxDB has no such mapping by default.
#
# The influxdb image runs the executable *.sh files in /docker-entrypoint-initdb.d
# once, right after its first-start setup, with the influx CLI already logged in
# as the admin and DOCKER_INFLUXDB_INIT_BUCKET_ID exported. It is idempotent, so
# on a stack set up before this script existed, run it by hand:
#
#   docker compose exec influxdb bash /docker-entrypoint-initdb.d/10-dbrp.sh
set -euo pipefail

bucket=${DOCKER_INFLUXDB_INIT_BUCKET:?DOCKER_INFLUXDB_INIT_BUCKET is not set}
org=${DOCKER_INFLUXDB_INIT_ORG:?DOCKER_INFLUXDB_INIT_ORG is not set}
rp=autogen

# Set by the image's entrypoint during init; looked up when run by hand.
bucket_id=${DOCKER_INFLUXDB_INIT_BUCKET_ID:-}
if [ -z "$bucket_id" ]; then
    bucket_id=$(influx bucket list --org "$org" --name "$bucket" --hide-headers | cut -f 1)
fi
if [ -z "$bucket_id" ]; then
    echo "10-dbrp.sh: bucket '$bucket' not found in org '$org'" >&2
    exit 1
fi

# InfluxDB 2.1+ also lists a read-only "virtual" mapping for every bucket; only a
# real one counts (and survives a bucket rename).
mappings=$(influx v1 dbrp list --org "$org" --db "$bucket")
mappings=${mappings%%VIRTUAL DBRP MAPPINGS*}
if grep -q -- "$bucket_id" <<<"$mappings"; then
    echo "10-dbrp.sh: InfluxQL database '$bucket' already maps to bucket $bucket_id"
    exit 0
fi

influx v1 dbrp create --org "$org" --bucket-id "$bucket_id" --db "$bucket" --rp "$rp" --default
echo "10-dbrp.sh: InfluxQL database '$bucket' (rp '$rp') now maps to bucket '$bucket' ($bucket_id)"
