# hpflow container image: one static-ish Rust binary on a slim Debian, run as a
# non-root user, with the pipelines and config under /etc/hpflow and its state
# (InfluxDB disk buffer, state_diff, dashboard history and settings) on a volume.
#
#   docker build -t hpflow:local .
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:9464:9464 hpflow:local demo
#
# The Compose stack (docker-compose.yml) builds and runs this with InfluxDB and
# Grafana; docs/deployment.md has the details.
#
# Build stages use only Dockerfile features that Debian 12's Docker (20.10, legacy
# builder) and docker-compose 1.29 understand: the dependency cache is a layer,
# not a BuildKit cache mount.

ARG RUST_IMAGE=rust:1.95.0-bookworm
ARG RUNTIME_IMAGE=debian:12.15-slim

# ---------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /src

# Dependencies first, against stub sources: this layer is rebuilt only when
# Cargo.toml or Cargo.lock change. The bench files must exist for the manifest
# to parse; they are not compiled here.
COPY Cargo.toml Cargo.lock ./
COPY benches/ benches/
RUN mkdir -p src/bin \
    && echo 'fn main() {}' > src/bin/hpflow.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin hpflow \
    && rm -rf src target/release/hpflow target/release/deps/hpflow-* \
              target/release/deps/libhpflow-* target/release/.fingerprint/hpflow-*

# The real sources, with config/registers.yml and pipelines/demo.toml, which
# the binary embeds (`hpflow demo` runs from any folder). Touching the .rs
# files keeps cargo from trusting a copied file's older mtime. The release
# profile's line tables make up four fifths of the binary: the image drops
# them (function names stay for backtraces).
COPY src/ src/
COPY config/ config/
COPY pipelines/demo.toml pipelines/demo.toml
RUN find src -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --bin hpflow \
    && install -D -m 0755 target/release/hpflow /out/hpflow \
    && strip --strip-debug /out/hpflow \
    && /out/hpflow --version

# ---------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime

ARG RUNTIME_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="hpflow" \
      org.opencontainers.image.description="Polls heat pumps over Modbus and delivers their values to InfluxDB, Prometheus and a live dashboard" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"

# tzdata: the dashboard shows "since HH:MM" in the zone TZ names.
# A fixed, high UID/GID that matches no host account; the data folder is created
# here, owned by it, so a fresh named volume starts out writable.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 hpflow \
    && useradd --system --uid 10001 --gid hpflow --home-dir /var/lib/hpflow --no-create-home \
               --shell /usr/sbin/nologin hpflow \
    && install -d -o hpflow -g hpflow -m 0750 /var/lib/hpflow

COPY --from=builder /out/hpflow /usr/local/bin/hpflow
# Read-only for the service user: configuration, not state.
COPY pipelines/ /etc/hpflow/pipelines/
COPY config/ /etc/hpflow/config/

# Listen on every interface inside the container (the pipelines default to
# loopback, which a published port cannot reach); Compose decides what the host
# exposes.
ENV HPFLOW_DATA_DIR=/var/lib/hpflow \
    HPFLOW_DASHBOARD_ADDRESS=0.0.0.0:8080 \
    HPFLOW_METRICS_ADDRESS=0.0.0.0:9464 \
    TZ=Etc/UTC

# Relative paths given to hpflow resolve here (`hpflow demo` needs none: its
# pipeline is built in).
WORKDIR /etc/hpflow
VOLUME ["/var/lib/hpflow"]
EXPOSE 8080 9464
USER 10001:10001

# The binary asks its own Prometheus endpoint: no curl in the image.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["hpflow", "healthcheck"]

ENTRYPOINT ["hpflow"]
CMD ["run", "/etc/hpflow/pipelines/heatpump.toml"]
