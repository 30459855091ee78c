#!/bin/sh
# Refuses to start a container whose secrets were left empty or as a placeholder,
# then runs the container's real command. docker-compose.yml puts it in front of
# each service's entrypoint, so `docker compose up` without a filled-in .env stops
# with a message naming the .env variable, instead of starting with a guessable
# password or an empty token. (Compose itself is not told to require them, so
# `docker compose config` still works on a fresh checkout.)
#
#   require-secrets.sh CONTAINER_VAR[:ENV_FILE_NAME]... -- COMMAND [ARG...]
#
# A secret must be at least 16 characters and must not look like a placeholder.
# POSIX sh: it runs in Debian (InfluxDB, hpflow) and Alpine (Grafana) images.
set -eu

min_length=16
failed=0

while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    spec=$1
    shift
    name=${spec%%:*}
    label=${spec#*:}
    case $name in
        '' | [0-9]* | *[!A-Za-z0-9_]*)
            echo "require-secrets: invalid variable name '$name'" >&2
            exit 2
            ;;
    esac
    # The name was checked above, so this eval only reads a variable.
    eval "value=\${$name:-}"
    lowered=$(printf '%s' "$value" | tr '[:upper:]' '[:lower:]')
    problem=""
    if [ -z "$value" ]; then
        problem="is not set"
    elif [ "${#value}" -lt "$min_length" ]; then
        problem="is shorter than $min_length characters"
    else
        case $lowered in
            *change-me* | *changeme* | *change_me* | *placeholder* | *example*)
                problem="is still a placeholder"
                ;;
        esac
    fi
    if [ -n "$problem" ]; then
        echo "error: $label $problem. Generate one with \`openssl rand -hex 32\`," \
            "put it in .env next to docker-compose.yml, then \`docker compose up -d\` again." >&2
        failed=1
    fi
done

if [ "$#" -eq 0 ]; then
    echo "require-secrets: missing '-- COMMAND'" >&2
    exit 2
fi
shift

if [ "$failed" -ne 0 ]; then
    exit 1
fi
if [ "$#" -eq 0 ]; then
    echo "require-secrets: no command after '--'" >&2
    exit 2
fi
exec "$@"
