# syntax=docker/dockerfile:1
#
# The placement-operator image. Build from the repository root (the build context):
#
#   docker build -f deploy/docker/operator.Dockerfile -t <registry>/placement-operator:0.1.0 .
#
# then point deploy/operator/deployment.yaml at it (its image, ghcr.io/placement-dev/..., is a placeholder).
#
# NOT BUILT IN THIS PROJECT'S CI: the machines CI runs on have no Docker engine (the `docker` command there
# is only a client). Instead .ci/check_dockerfiles.py replays the builder stage without Docker and fails
# where `docker build` would (a target without a stand-in, a crate or included file not copied);
# deploy/kind/e2e.sh builds the image for real where Docker runs. A new workspace crate needs its
# Cargo.toml copied below; new targets need nothing (deploy/docker/stand-ins.sh reads the manifests).

ARG RUST_IMAGE=rust:1.95-bookworm
# distroless "cc": glibc and libgcc_s (which a Rust binary built against glibc needs), CA certificates,
# tzdata, and a passwd entry for nonroot (65532); no shell, no package manager. The builder is Debian 12
# too, so the binary's glibc matches.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_PROFILE_RELEASE_STRIP=symbols

# 1. Dependencies only: the manifests, the lock file and empty stand-ins for every target, built once.
#    This layer is reused as long as no Cargo.toml and Cargo.lock change. The stand-ins' own builds are
#    then forgotten, so that the real sources are compiled whatever their timestamps.
COPY Cargo.toml Cargo.lock ./
COPY placement-core/Cargo.toml placement-core/
COPY placement-kube/Cargo.toml placement-kube/
COPY placement-testkit/Cargo.toml placement-testkit/
COPY placement-webhook/Cargo.toml placement-webhook/
COPY placement-operator/Cargo.toml placement-operator/
COPY benches/Cargo.toml benches/
COPY examples/Cargo.toml examples/
COPY deploy/docker/stand-ins.sh deploy/docker/
RUN sh deploy/docker/stand-ins.sh \
    && cargo build --release -p placement-operator --locked \
    && rm -rf target/release/.fingerprint/placement-* target/release/deps/placement_* \
        target/release/deps/libplacement_* target/release/placement-operator*

# 2. The crates the operator is built from, and the demo scenario `simulate` embeds (the webhook,
#    benches and other examples keep their stand-ins).
COPY placement-core placement-core
COPY placement-kube placement-kube
COPY placement-operator placement-operator
COPY examples/scenarios examples/scenarios
RUN cargo build --release -p placement-operator --locked \
    && install -D -m 0755 target/release/placement-operator /out/placement-operator

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="placement-operator" \
      org.opencontainers.image.description="Keeps pod placement true and rebalances utilization safely" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/placement-operator /placement-operator
USER 65532:65532
# 8080: plain HTTP /healthz, /readyz, /metrics. The operator serves nothing else.
EXPOSE 8080
ENTRYPOINT ["/placement-operator"]
CMD ["run"]
