# switchback container image. Base images cannot be pulled on the machine this was written
# on, so this file follows the usual conventions and is not built by `make test`:
#   docker build -t switchback .
#   docker run -v $PWD/config:/etc/switchback:ro -v switchback-state:/var/lib/switchback \
#     -p 8080:8080 switchback
# The default config is contrib/docker/switchback.toml; yours must likewise set
# [state] dir = "/var/lib/switchback" (the config mount is read-only), listen on 0.0.0.0 and,
# for the HEALTHCHECK, [proxy] health-path = "/switchback/health".

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake protobuf-compiler && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin switchback && mkdir -p /out/var/lib/switchback

# Distroless: glibc, CA certificates and a non-root user (65532), no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/switchback /usr/local/bin/switchback
COPY contrib/docker/switchback.toml /etc/switchback/switchback.toml
COPY --from=build --chown=65532:65532 /out/var/lib/switchback /var/lib/switchback
USER 65532:65532
VOLUME ["/var/lib/switchback"]
ENV SWITCHBACK_CONFIG=/etc/switchback/switchback.toml
EXPOSE 8080 9900
HEALTHCHECK --interval=10s --timeout=3s \
  CMD ["/usr/local/bin/switchback", "probe", "http://127.0.0.1:8080/switchback/health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchback"]
CMD ["serve"]
