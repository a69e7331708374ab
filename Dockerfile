# Sightline container image. README.md, "Docker image", lists every command this file runs and how to
# build it (docker build -t sightline:0.1.0 .). test/helm/dockerfile.test.ts checks the rules below.
#
# Base: Node 22 LTS on Debian bookworm, slim variant, pinned by tag. For reproducible builds pin the
# digest too: --build-arg NODE_IMAGE=node:22-bookworm-slim@sha256:<digest>.
ARG NODE_IMAGE=node:22-bookworm-slim

# ---------------------------------------------------------------------------------------------------
# Build stage: install everything, generate the protobuf code, compile, then drop what runtime does
# not need. Native parts: better-sqlite3 downloads a prebuilt binary (or compiles with the toolchain
# below when none matches), sharp's libvips comes as an npm package, onnxruntime-node ships its CPU
# binaries in the package.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# onnxruntime-node's install script would download CUDA libraries; the CPU binaries ship in the package.
ENV ONNXRUNTIME_NODE_INSTALL=skip

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*

COPY package.json package-lock.json tsconfig.json ./
COPY scripts/gen-proto.mjs scripts/gen-wasm.mjs scripts/prune-onnxruntime.mjs ./scripts/
COPY proto/ ./proto/
COPY migrations/ ./migrations/
COPY src/ ./src/

# npm ci runs the `prepare` script: protobuf code generation, the WebAssembly resample kernel and tsc,
# into dist/.
RUN npm ci --no-audit --no-fund
RUN npm prune --omit=dev --no-audit --no-fund

# Keep only onnxruntime-node's binary for the target platform (TARGETARCH is set by BuildKit: amd64 or
# arm64; empty with the legacy builder, then the build machine's architecture).
ARG TARGETARCH
RUN node scripts/prune-onnxruntime.mjs "${TARGETARCH}"

# ---------------------------------------------------------------------------------------------------
# Runtime stage: the compiled code, production node_modules, the .proto contract (reflection) and the
# SQL migrations. Everything under /app belongs to root and is read-only for the service user.
FROM ${NODE_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="sightline" \
      org.opencontainers.image.description="Sightline: gRPC object-detection inference service on ONNX Runtime" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/node:22-bookworm-slim"

# Containers listen on all interfaces; data (registry role) and blob cache (inference role) are the only
# writable directories, so the root filesystem can be mounted read-only (plus a /tmp volume).
# MALLOC_ARENA_MAX=2: glibc's per-thread malloc arenas inflate RSS with worker threads.
ENV NODE_ENV=production \
    ONNXRUNTIME_NODE_INSTALL=skip \
    SIGHTLINE_GRPC__HOST=0.0.0.0 \
    SIGHTLINE_ADMIN__HOST=0.0.0.0 \
    SIGHTLINE_REGISTRY__DATA_DIR=/var/lib/sightline \
    SIGHTLINE_REGISTRY__CACHE_DIR=/var/cache/sightline \
    MALLOC_ARENA_MAX=2

# Debian's libturbojpeg: the JPEG decoder prefers the system's copy (security updates from the
# distribution, and faster than the one bundled with the npm binding; docs/BENCHMARKS.md).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libturbojpeg0 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/proto ./proto
COPY --from=build /app/migrations ./migrations

# uid/gid 1000 is the base image's `node` user; numeric so Kubernetes can check runAsNonRoot.
# `sightline` on PATH (the package's bin, run by its shebang) so operators use the CLI in any pod:
# kubectl exec POD -- sightline registry status NAME. Client commands need no heap flag.
RUN mkdir -p /var/lib/sightline /var/cache/sightline \
 && chown 1000:1000 /var/lib/sightline /var/cache/sightline \
 && chmod 755 /app/dist/src/cli/launch.cjs \
 && ln -s /app/dist/src/cli/launch.cjs /usr/local/bin/sightline
USER 1000:1000

# 50051: gRPC (Detector, Registry, Open Inference Protocol, grpc.health.v1, reflection). 9464: admin HTTP
# (/metrics, /healthz, /readyz). 8000: the HTTP port when http.enabled (OIP REST, /v1/detect).
EXPOSE 50051 9464 8000

# SIGTERM starts the graceful shutdown (health NOT_SERVING, drain for shutdownGraceMs, then exit); a
# second signal exits at once. Give the container at least shutdownGraceMs + 5 s
# (docker stop -t 15; the Helm chart derives terminationGracePeriodSeconds from it).
STOPSIGNAL SIGTERM

# No HEALTHCHECK: Kubernetes ignores it and probes grpc.health.v1 (or /healthz and /readyz) itself, and
# a HEALTHCHECK would start a second Node.js process every interval. With plain Docker, check
# http://<container>:9464/readyz from outside.
# --heap-growing-percent=300: with V8's default heap limit (~2x live) the buffers each request allocates
# outside the JS heap can start a full collection every 100-200 ms under load (README, "Garbage
# collection"). A V8 flag, so Node refuses it in NODE_OPTIONS.
ENTRYPOINT ["node", "--heap-growing-percent=300", "/app/dist/src/cli/launch.cjs"]
CMD ["serve"]
