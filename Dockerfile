# syntax=docker/dockerfile:1
#
# The wasmbed binary, alone in a minimal image: every component runs from it
# (`wasmbed controller`, `wasmbed gateway`, ...), as deploy/ does.
#
#   docker build -t wasmbed:dev .
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t REGISTRY/wasmbed:TAG .
#
# The first build compiles kube-apiserver and etcd, which the binary links
# for `wasmbed up`: about 7 minutes on 2 cores.

# The Go release of go.mod's go directive (a test in deploy/ checks it).
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so that this layer is rebuilt only when they change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
# `make release`: stripped, without local paths, with the version flags of
# the Makefile. Static: without cgo there is no C library to link, and the
# final image has none.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 make release VERSION=${VERSION} BIN=/out

# Distroless static: CA certificates, time zones and a nonroot user, no
# shell, no package manager, no C library.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wasmbed /usr/local/bin/wasmbed
# The nonroot user of the base image; deploy/ runs the pods as the same id.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/wasmbed"]
