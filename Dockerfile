# syntax=docker/dockerfile:1
#
# Liveshop engine image: `docker build -t liveshop .`
# Holds both binaries: `liveshop` (the engine, the default) and `liveshop-load` (the load tool).

# ---- build ------------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the registry and target directory between builds; the binaries are copied
# out of the cached target directory so the next stage can take them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --bin liveshop --bin liveshop-load \
    && install -D -m 0755 -t /out target/release/liveshop target/release/liveshop-load

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to Postgres/Redis/providers; curl: the HEALTHCHECK below.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 liveshop \
    && useradd --system --uid 10001 --gid liveshop --home-dir /app --shell /usr/sbin/nologin liveshop \
    && mkdir -p /app \
    && chown liveshop:liveshop /app

COPY --from=builder /out/liveshop /out/liveshop-load /usr/local/bin/

# /app is the working directory so that the embedded SQLite default (liveshop.db) is writable.
WORKDIR /app
USER liveshop:liveshop

ENV LIVESHOP_LISTEN=0.0.0.0:8080 \
    RUST_LOG=info
EXPOSE 8080

# SIGTERM starts the graceful drain (sessions closed with 1012, writes flushed).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/health || exit 1

ENTRYPOINT ["liveshop"]
CMD ["serve"]
