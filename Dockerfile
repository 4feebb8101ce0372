# driftwatch container image: build in a Rust image, run on a slim Debian.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential make perl pkg-config libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
COPY rules ./rules
RUN cargo build --release --locked --bin driftwatch

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/driftwatch --create-home driftwatch
COPY --from=build /src/target/release/driftwatch /usr/local/bin/driftwatch
COPY rules /etc/driftwatch/rules
USER driftwatch
WORKDIR /var/lib/driftwatch
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=3s CMD curl -fsS http://127.0.0.1:9464/healthz || exit 1
ENTRYPOINT ["driftwatch"]
CMD ["run", "--config", "/etc/driftwatch/driftwatch.toml"]
