# syntax=docker/dockerfile:1
# Multi-stage build: compile with the Rust toolchain, run on a slim Debian with only
# the binary, as a non-root user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY benches ./benches
RUN cargo build --release --locked --bin wasm-hypervisor

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin hypervisor \
    && mkdir -p /data && chown hypervisor /data && chmod 0700 /data
COPY --from=build /src/target/release/wasm-hypervisor /usr/local/bin/wasm-hypervisor

USER hypervisor
ENV WASM_HYPERVISOR_LISTEN=0.0.0.0:8080 \
    WASM_HYPERVISOR_DATA_DIR=/data \
    RUST_LOG=info
VOLUME ["/data"]
EXPOSE 8080
# `health` fails on any 503: the log cannot be written, /data is not writable or
# has less than data_dir_min_free_bytes free, or the server is shutting down.
HEALTHCHECK --interval=10s --timeout=6s --start-period=5s --retries=3 \
    CMD ["wasm-hypervisor", "health", "--server", "http://127.0.0.1:8080"]
# On SIGTERM the server drains for up to shutdown_grace_secs (default 30) before it
# closes the log and exits 0: run with a stop timeout above that (docker run
# --stop-timeout 40), since Docker's default of 10 s would SIGKILL it mid-drain.
STOPSIGNAL SIGTERM
ENTRYPOINT ["wasm-hypervisor"]
CMD ["serve"]
