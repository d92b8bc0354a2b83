# syntax=docker/dockerfile:1
#
# Container image for macp-auth-service.
#
#   docker build -t macp-auth-service:local .
#   docker run --rm -p 3200:3200 macp-auth-service:local
#
# The builder must run Debian 12 (bookworm), the same release as the runtime
# image, so the binary never needs a newer glibc than the runtime has.
# AWS-LC is compiled into the binary; the only shared libraries it needs are
# glibc and libgcc_s, and the distroless "cc" image has both.

FROM rust:1.95-bookworm AS builder

# cargo-auditable embeds the crate's dependency list (a compressed JSON in the
# `.dep-v0` ELF section) in the binary, so scanners (trivy, grype,
# `cargo audit bin`) can read it from the image. Installed into this stage
# only; the runtime image gets the binary alone.
ARG CARGO_AUDITABLE_VERSION=0.7.7
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo install cargo-auditable --version "${CARGO_AUDITABLE_VERSION}" --locked

WORKDIR /src

# Only what `cargo build` reads. If the crate grows a build.rs, or declares
# targets outside src/ in Cargo.toml, copy those here too.
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY src ./src
# Cargo.toml declares the micro-benchmark target; cargo refuses a manifest
# whose declared targets are missing, even when building only the binary.
COPY benches ./benches

# The cache mounts keep downloaded crates and compiled dependencies between
# builds, so a source change recompiles only this crate. `target/` lives in a
# cache mount, so the binary is copied out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo auditable build --release --locked --bin macp-auth-service \
    && install -D -m 0755 target/release/macp-auth-service /out/macp-auth-service

FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="macp-auth-service" \
      org.opencontainers.image.description="Identity provider for the Multi-Agent Coordination Protocol: mints short-lived JWTs and publishes their JWKS" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /out/macp-auth-service /usr/local/bin/macp-auth-service

# The distroless "nonroot" user. Numeric, so Kubernetes can check
# runAsNonRoot without looking the name up.
USER 65532:65532

EXPOSE 3200

# The image has no shell or curl: the binary probes its own /healthz
# (http://127.0.0.1:$PORT/healthz, 2 s timeout) and exits 0 or 1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/macp-auth-service", "healthcheck"]

# No arguments means `serve`; `keygen`, `check-config` and `healthcheck` work
# as arguments too. On SIGTERM (Docker's stop signal) the service drains
# in-flight requests for up to 10 s, which is also `docker stop`'s default
# grace: give it a little more (`docker stop -t 15`, `--stop-timeout 15`) so a
# full drain is never cut short by SIGKILL.
ENTRYPOINT ["/usr/local/bin/macp-auth-service"]
