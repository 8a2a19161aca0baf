# syntax=docker/dockerfile:1
#
# The starmap image: starmap, kustomize and helm, static binaries on distroless, as
# ghcr.io/starmap-dev/starmap:<version>. Runs as the distroless "nonroot" user (65532). The
# entrypoint is starmap itself, so the arguments are a starmap command: in a cluster, the
# controller `run --config /etc/starmap/config.yaml` (install/starmap/deployment.yaml); in
# CI, `plan` and `render` (docs/ci/, which copy the binary out of the image).
#
#   docker build -t ghcr.io/starmap-dev/starmap:0.1.0 .
#   docker run --rm ghcr.io/starmap-dev/starmap:0.1.0 --help
#   # the controller outside a cluster (its config.yaml with leaderElect: false):
#   docker run --rm -p 8080:8080 -v "$PWD/config.yaml:/etc/starmap/config.yaml:ro" \
#     -e GIT_USERNAME -e GIT_TOKEN ghcr.io/starmap-dev/starmap:0.1.0 run --config /etc/starmap/config.yaml
#
# NOT BUILT YET: it was written on a machine with no Docker engine, so no `docker build` has
# run it. What was checked instead: both `go install` commands of stage 1, exactly as below,
# ran and gave static kustomize v5.5.0 and helm v3.17.3; the cargo feature and target of
# stage 2 resolve (`cargo tree --target x86_64-unknown-linux-musl --features
# vendored-openssl`), and every path copied below is one these commands write.
#
# Stage 2 needs, in Cargo.toml:
#   [features]
#   vendored-openssl = ["git2/vendored-openssl"]
# and Cargo.lock updated for it (it adds openssl-src), or `--locked` fails.

ARG GO_VERSION=1.24
# The toolchain starmap is developed and tested with (Cargo.toml's rust-version is 1.89).
ARG RUST_VERSION=1.95
ARG KUSTOMIZE_VERSION=v5.5.0
ARG HELM_VERSION=v3.17.3

# --- 1. kustomize and helm, static (CGO_ENABLED=0), into /out -----------------------------
FROM golang:${GO_VERSION}-bookworm AS tools
ARG KUSTOMIZE_VERSION
ARG HELM_VERSION
ENV CGO_ENABLED=0 GOBIN=/out
# The -X flags set the versions `kustomize version` and `helm version` print (their release
# builds set them the same way); -s -w drop the symbol tables.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go install -trimpath \
      -ldflags="-s -w -X sigs.k8s.io/kustomize/api/provenance.version=${KUSTOMIZE_VERSION}" \
      sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION} \
 && go install -trimpath \
      -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
      helm.sh/helm/v3/cmd/helm@${HELM_VERSION} \
 && /out/kustomize version \
 && /out/helm version --short

# --- 2. starmap, static for x86_64-unknown-linux-musl ---------------------------------------
# git2 is built with vendored libgit2 and the https and ssh features, so libgit2, libssh2,
# zlib and OpenSSL are all C libraries compiled here: with musl-gcc (musl-tools) for the
# musl target, OpenSSL from source (openssl-src, through the vendored-openssl feature; do
# not set OPENSSL_NO_VENDOR, which would turn that off), and linked statically.
FROM rust:${RUST_VERSION}-bookworm AS build
# The image tag fixes the Debian release, and so musl-tools' version.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
ENV OPENSSL_STATIC=1 \
    LIBZ_SYS_STATIC=1 \
    CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols
WORKDIR /src
# Everything but what .dockerignore leaves out (target/, .git/): the build needs Cargo.toml,
# Cargo.lock, src/, templates/ (built into the binary) and benches/ (declared in Cargo.toml).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl --features vendored-openssl \
 && cp target/x86_64-unknown-linux-musl/release/starmap /starmap \
 && readelf -d /starmap > /tmp/dynamic-section.txt \
 && if grep -q NEEDED /tmp/dynamic-section.txt; then echo "starmap is not static" >&2; exit 1; fi \
 && /starmap --version

# --- 3. runtime: no shell, no libc, CA certificates, user nonroot -------------------------
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="starmap" \
      org.opencontainers.image.description="Render Kubernetes workloads per cluster into a GitOps deploy repo for Argo CD or Flux" \
      org.opencontainers.image.source="https://github.com/starmap-dev/starmap" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=tools /out/kustomize /out/helm /usr/local/bin/
COPY --from=build /starmap /usr/local/bin/starmap
# The vendored OpenSSL looks for CA certificates under its own build prefix; point it at
# the ones distroless ships.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_DIR=/etc/ssl/certs
USER 65532:65532
# The controller's HTTP port (/healthz, /readyz, /metrics, /webhook) when its config says
# `listen: 0.0.0.0:8080` (its own default, 127.0.0.1:8080, is not reachable from outside the
# container). Documentation only; the other commands open no port.
EXPOSE 8080
# No shell in the image: a probe or a health check is an HTTP GET from outside (the kubelet's
# httpGet), not a command run inside.
ENTRYPOINT ["/usr/local/bin/starmap"]
CMD ["--help"]
