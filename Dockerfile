# Images of the Docker Compose stack (docker-compose.yml): one target per
# image, all built from this file. Every base image is pinned to an exact
# version; e2e/compose checks that, and that every target the compose file
# names exists here.
#
#   users, products, edge, controlplane  the Portico binaries, as `make build`
#                                        builds them (-trimpath, version ldflags)
#   ratelimit                            envoyproxy/ratelimit at the commit
#                                        .ci/install-ratelimit.sh pins
#   sidecar                              Envoy + consul: a Connect sidecar
#                                        (`podkit sidecar`)
#   ingress                              Envoy with the ingress bootstrap
#                                        (envoy/ingress.yaml.tmpl), rendered here
#
# The runtime images run as an unprivileged user (65532) and carry podkit
# (mesh/cmd/podkit) for their healthchecks.

# --- build ------------------------------------------------------------------

FROM golang:1.26.8 AS build
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
WORKDIR /src
# Modules first: this layer survives source edits.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The version `make build` stamps with `git describe`; .git is not in the
# build context, so compose passes PORTICO_VERSION.
ARG VERSION=dev
# Package paths as in the Makefile's BINARIES (devstack, the `make up`
# supervisor, is what this stack replaces), plus podkit. Go's build cache
# outlives the layer (a BuildKit cache mount, as Compose v2 always builds
# with BuildKit): a source change recompiles only what it touches.
RUN --mount=type=cache,target=/root/.cache/go-build \
    mkdir -p /out && \
    for b in users=./services/cmd/users products=./services/cmd/products edge=./edge/cmd/edge \
             controlplane=./edge/cmd/controlplane podkit=./mesh/cmd/podkit; do \
      go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o "/out/${b%%=*}" "${b#*=}" || exit 1; \
    done
# The ingress bootstrap: everything but the control plane's address (the
# controlplane service) is the same as under `make up`; its metrics
# listener is on every address so that Prometheus can scrape it.
RUN /out/podkit ingress-bootstrap -node-id ingress-1 -admin-port 19000 -xds controlplane:18000 \
      -metrics-host 0.0.0.0 -metrics-port 19100 > /out/ingress.yaml

# envoyproxy/ratelimit, built by the same script `make deps` runs, so the
# pinned commit lives in one place.
FROM golang:1.26.8 AS ratelimit-build
ENV CGO_ENABLED=0
WORKDIR /src
COPY .ci/gomodbuild.sh .ci/install-ratelimit.sh .ci/
RUN --mount=type=cache,target=/root/.cache/go-build .ci/install-ratelimit.sh

# The Swagger UI assets the edge serves at /docs/, installed by the same
# script `make deps` runs (npm package swagger-ui-dist at the version pinned
# in edge/apidocs/serve.go), into .cache/swagger-ui-dist/<version> under the
# work directory, which is where the edge looks by default.
FROM node:22.14.0-bookworm-slim AS swagger-ui
WORKDIR /src
COPY edge/scripts/install-swagger-ui.sh edge/scripts/install-swagger-ui.sh
COPY edge/apidocs/serve.go edge/apidocs/serve.go
RUN edge/scripts/install-swagger-ui.sh

FROM hashicorp/consul:1.22.5 AS consul

# --- runtime ----------------------------------------------------------------

FROM debian:12.11-slim AS runtime
# The users service keeps its JWT signing keys here (a named volume in
# compose; a new volume takes this directory's owner).
RUN mkdir -p /var/lib/portico/keys && chown 65532:65532 /var/lib/portico/keys
COPY --from=build /out/podkit /usr/local/bin/podkit
WORKDIR /app
USER 65532:65532

FROM runtime AS users
COPY --from=build /out/users /usr/local/bin/users
ENTRYPOINT ["/usr/local/bin/users"]

FROM runtime AS products
COPY --from=build /out/products /usr/local/bin/products
ENTRYPOINT ["/usr/local/bin/products"]

FROM runtime AS edge
COPY --from=swagger-ui /src/.cache/swagger-ui-dist /app/.cache/swagger-ui-dist
COPY --from=build /out/edge /usr/local/bin/edge
ENTRYPOINT ["/usr/local/bin/edge"]

FROM runtime AS controlplane
COPY --from=build /out/controlplane /usr/local/bin/controlplane
ENTRYPOINT ["/usr/local/bin/controlplane"]

FROM runtime AS ratelimit
COPY --from=ratelimit-build /src/.cache/bin/ratelimit /usr/local/bin/ratelimit
ENTRYPOINT ["/usr/local/bin/ratelimit"]

# A Connect sidecar: `consul connect envoy -bootstrap` against the pod's
# agent, then Envoy (envoy/README.md, the way `make up` runs them).
FROM envoyproxy/envoy:v1.36.4 AS sidecar
COPY --from=consul /bin/consul /usr/local/bin/consul
COPY --from=build /out/podkit /usr/local/bin/podkit
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/podkit", "sidecar", "-consul", "/usr/local/bin/consul", "-envoy", "/usr/local/bin/envoy"]

FROM envoyproxy/envoy:v1.36.4 AS ingress
COPY --from=build /out/ingress.yaml /etc/envoy/ingress.yaml
COPY --from=build /out/podkit /usr/local/bin/podkit
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/envoy", "--config-path", "/etc/envoy/ingress.yaml", "--disable-hot-restart", "-l", "warn"]
