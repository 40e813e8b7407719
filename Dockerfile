# Multi-stage build: compile with the Rust toolchain, run on a slim Debian with only
# the binary, as a non-root user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The dependencies first, in a layer of their own: the workspace's manifests, the
# lock file and the server's build script, with stub sources, so that a source change
# reuses this layer (about 300 crates) and only a manifest or Cargo.lock change
# rebuilds it. Every [[bench]] a manifest names must exist for cargo to read it.
COPY Cargo.toml Cargo.lock ./
COPY crates/protocol/Cargo.toml crates/protocol/
COPY crates/server/Cargo.toml crates/server/build.rs crates/server/
COPY crates/client/Cargo.toml crates/client/
RUN mkdir -p src benches crates/protocol/src crates/protocol/benches \
        crates/server/src crates/client/src \
    && for stub in src/main benches/audit_log benches/sandbox crates/protocol/benches/envelope \
        crates/protocol/benches/merkle crates/protocol/benches/plaintext; do \
        echo 'fn main() {}' > "$stub.rs"; done \
    && touch crates/protocol/src/lib.rs crates/server/src/lib.rs crates/client/src/lib.rs \
    && cargo build --release --locked --bin wasm-hypervisor

# Then the sources (the benches stay stubs: they are not built). COPY keeps the
# files' own modification times, older than the stubs' build, so they are touched:
# cargo then rebuilds our four crates and nothing else.
COPY src ./src
COPY crates ./crates
# The playground's files, compiled into the binary (crates/server/src/api/playground.rs).
COPY clients/js/dist ./clients/js/dist
COPY clients/js/playground ./clients/js/playground
COPY clients/js/vendor ./clients/js/vendor
COPY examples/hello.wasm examples/sha256sum.wasm examples/tiny.wasm ./examples/
RUN find src crates -name '*.rs' ! -name build.rs -exec touch {} + \
    && cargo build --release --locked --bin wasm-hypervisor

FROM debian:bookworm-slim
# No ca-certificates: nothing in the image reads the system's trust store. The server
# speaks plain HTTP, and the client commands' HTTPS (`run`, `verify`, `health` with an
# https:// URL) is rustls with the Mozilla roots compiled into the binary
# (reqwest's `rustls-tls`, that is webpki-roots), never /etc/ssl.
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin hypervisor \
    && mkdir -p /data && chown hypervisor /data && chmod 0700 /data
COPY --from=build /src/target/release/wasm-hypervisor /usr/local/bin/wasm-hypervisor

USER hypervisor
ENV WASM_HYPERVISOR_LISTEN=0.0.0.0:8080 \
    WASM_HYPERVISOR_DATA_DIR=/data \
    RUST_LOG=info
# A bind mount on /data must be owned by uid 10001 (mode 0700); otherwise the
# server cannot create its key and stops at start-up (docs/deployment.md, "The container").
VOLUME ["/data"]
EXPOSE 8080
# `health` probes the address the server is configured to listen on, from the same
# environment (WASM_HYPERVISOR_LISTEN, 0.0.0.0 probed as 127.0.0.1), so changing
# the port with that variable moves the check too; `serve --listen` or `--config`
# does not (then give the check `--server URL` or `--config FILE`). It fails on any
# 503: the log cannot be written, /data is not writable or has less than
# data_dir_min_free_bytes free, or the server is shutting down.
HEALTHCHECK --interval=10s --timeout=6s --start-period=5s --retries=3 \
    CMD ["wasm-hypervisor", "health"]
# On SIGTERM the server drains for up to shutdown_grace_secs (default 30) before it
# closes the log and exits 0: run with a stop timeout above that (docker run
# --stop-timeout 40), since Docker's default of 10 s would SIGKILL it mid-drain.
STOPSIGNAL SIGTERM
ENTRYPOINT ["wasm-hypervisor"]
CMD ["serve"]
