# Portico on Nomad with Consul Connect: the users and products services,
# the edge (response cache and merged API documents) and the gateway
# (Portico's xDS control plane, envoyproxy/ratelimit and the ingress Envoy
# on port 5000). nomad/README.md explains how to run it and how it maps to
# `make up`.
#
# PostgreSQL, Redis and RabbitMQ are not part of this job: they are
# stateful and run wherever the operator keeps state; their addresses and
# credentials come in as variables.
#
# Nomad registers every service and its Envoy sidecar in Consul. The
# binaries register themselves only when CONSUL_HTTP_ADDR is non-empty
# (services/platform/service.ConsulConfig, read by users, products and the
# edge), so each of those tasks sets it to "" explicitly: an image or an
# agent that put a value in the environment would otherwise register a
# second instance next to Nomad's.
#
# Intentions are not part of the job. Apply mesh/entries first:
#   for f in mesh/entries/*.json; do consul config write "$f"; done

variable "datacenters" {
  description = "Datacenters the job may run in."
  type        = list(string)
  default     = ["*"]
}

variable "image_registry" {
  description = "Registry and repository prefix of the Portico images built from the repository Dockerfile: <image_registry>/<binary>:<version>."
  type        = string
  default     = "portico"
}

variable "version" {
  description = "Image tag of the Portico images (a release or a commit); never \"latest\"."
  type        = string

  validation {
    condition     = var.version != "" && var.version != "latest"
    error_message = "The version must name a release or commit, not \"latest\"."
  }
}

variable "envoy_image" {
  description = "Envoy image of the ingress. Envoy 1.36.4 is the version .ci/install-envoy.sh pins for `make up`. The sidecars use Nomad's default (meta.connect.sidecar_image)."
  type        = string
  default     = "docker.io/envoyproxy/envoy:v1.36.4"
}

variable "ratelimit_version" {
  description = "Tag of <image_registry>/ratelimit, envoyproxy/ratelimit built from the repository Dockerfile: the commit .ci/install-ratelimit.sh pins, as docker-compose.yml tags it."
  type        = string
  default     = "3fb702589d36"
}

variable "image_uid" {
  description = "User id the Portico images run as (the repository Dockerfile's 65532): owner of the secrets the users task reads."
  type        = number
  default     = 65532
}

variable "users_count" {
  description = "Instances of the users service."
  type        = number
  default     = 1
}

variable "products_count" {
  description = "Instances of the products service."
  type        = number
  default     = 2
}

variable "edge_count" {
  description = "Instances of the edge. They share Redis and the purge queue."
  type        = number
  default     = 1
}

variable "users_database_url" {
  description = "PostgreSQL URL of the users database, password included. Secret: pass it with -var or -var-file, never commit it."
  type        = string
}

variable "products_database_url" {
  description = "PostgreSQL URL of the products database (shared by every products instance). Secret."
  type        = string
}

variable "amqp_url" {
  description = "RabbitMQ URL of the services and the edge, e.g. amqp://portico:<password>@rabbitmq.example:5672/. Secret."
  type        = string
}

variable "amqp_exchange" {
  description = "Topic exchange the services publish their events to and the edge purges from."
  type        = string
  default     = "portico.events"
}

variable "edge_redis_url" {
  description = "Redis URL of the edge's response cache, e.g. redis://redis.example:6379/0."
  type        = string
}

variable "ratelimit_redis_addr" {
  description = "Redis host:port of the rate-limit counters."
  type        = string
}

variable "consul_http_addr" {
  description = "Consul HTTP API as the control plane reaches it from its bridge network (not the node's 127.0.0.1); empty means port 8500 on the node's address, so the agent's client_addr must include it."
  type        = string
  default     = ""
}

variable "ingress_port" {
  description = "Static port the ingress listens on on every node it runs on."
  type        = number
  default     = 5000
}

locals {
  image = {
    users        = "${var.image_registry}/users:${var.version}"
    products     = "${var.image_registry}/products:${var.version}"
    edge         = "${var.image_registry}/edge:${var.version}"
    controlplane = "${var.image_registry}/controlplane:${var.version}"
    ratelimit    = "${var.image_registry}/ratelimit:${var.ratelimit_version}"
  }
  consul_http_addr = var.consul_http_addr != "" ? var.consul_http_addr : "${attr.unique.network.ip-address}:8500"
}

job "portico" {
  datacenters = var.datacenters
  type        = "service"

  # One rolling update at a time; a canary must pass its checks before the
  # old allocations go, and a deployment that never gets healthy rolls
  # back to the last good version.
  update {
    max_parallel      = 1
    canary            = 1
    auto_promote      = true
    auto_revert       = true
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
  }

  reschedule {
    delay          = "30s"
    delay_function = "exponential"
    max_delay      = "10m"
    unlimited      = true
  }

  group "users" {
    count = var.users_count

    network {
      mode = "bridge"
    }

    # Nomad deregisters the instance, then waits this long before stopping
    # the task, so callers' sidecars stop sending it requests first (what
    # CONSUL_DRAIN_DELAY does when a service registers itself).
    shutdown_delay = "5s"

    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "delay"
    }

    service {
      name     = "users"
      provider = "consul"
      # The port the service listens on inside the allocation's network;
      # only its sidecar reaches it.
      port = "8081"
      tags = ["portico"]

      # The edge finds API documents by this meta in the catalog, as with
      # self-registration (services/platform/registry).
      meta {
        version = var.version
        openapi = "/openapi.json"
      }

      connect {
        sidecar_service {}

        sidecar_task {
          resources {
            cpu    = 100
            memory = 64
          }
        }
      }

      # Checked through a path the sidecar exposes: the service itself
      # listens on the allocation's loopback only.
      check {
        name     = "users ready"
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
        expose   = true
      }
    }

    task "users" {
      driver = "docker"

      config {
        image = local.image.users
      }

      env {
        HTTP_ADDR        = "127.0.0.1:8081"
        CONSUL_HTTP_ADDR = ""
        DATABASE_URL     = var.users_database_url
        AMQP_URL         = var.amqp_url
        AMQP_EXCHANGE    = var.amqp_exchange
        JWT_KEYS_DIR     = "${NOMAD_SECRETS_DIR}/jwt"
      }

      # The users service's secrets are a Nomad Variable, not job variables,
      # which anyone who may read the job could read:
      #   nomad var put nomad/jobs/portico/users jwt_signing_key=@signing.pem \
      #     bootstrap_admin_email=... bootstrap_admin_password=...
      # The templates block until the variable exists. The signing key is
      # required: a generated development key would differ per allocation
      # and be lost with it; an empty one fails the start loudly.
      template {
        destination = "secrets/jwt/signing.pem"
        perms       = "0600"
        uid         = var.image_uid
        gid         = var.image_uid
        change_mode = "restart"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/portico/users" }}{{ (index . "jwt_signing_key").Value }}{{ end }}
        EOT
      }

      # The admin account created at start when none exists: only when both
      # keys are set (the service refuses one without the other).
      template {
        destination = "secrets/admin.env"
        env         = true
        # Nomad reads it into the environment; the task never needs the file.
        perms       = "0600"
        change_mode = "restart"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/portico/users" }}
          {{- $email := (index . "bootstrap_admin_email").Value }}
          {{- $password := (index . "bootstrap_admin_password").Value }}
          {{- if and $email $password }}
          BOOTSTRAP_ADMIN_EMAIL={{ $email }}
          BOOTSTRAP_ADMIN_PASSWORD={{ $password }}
          {{- end }}
          {{- end }}
        EOT
      }

      # The log level is an operational knob in Consul KV; changing the key
      # restarts the task with the new level.
      template {
        destination = "local/log.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          LOG_LEVEL={{ keyOrDefault "portico/users/log_level" "info" }}
        EOT
      }

      # SHUTDOWN_TIMEOUT (20s) plus the outbox flush.
      kill_timeout = "30s"

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }

  group "products" {
    count = var.products_count

    network {
      mode = "bridge"
    }

    shutdown_delay = "5s"

    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "delay"
    }

    service {
      name     = "products"
      provider = "consul"
      port     = "8082"
      tags     = ["portico"]

      meta {
        version = var.version
        openapi = "/openapi.json"
      }

      connect {
        sidecar_service {}

        sidecar_task {
          resources {
            cpu    = 100
            memory = 64
          }
        }
      }

      check {
        name     = "products ready"
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
        expose   = true
      }
    }

    task "products" {
      driver = "docker"

      config {
        image = local.image.products
      }

      env {
        HTTP_ADDR        = "127.0.0.1:8082"
        CONSUL_HTTP_ADDR = ""
        DATABASE_URL     = var.products_database_url
        AMQP_URL         = var.amqp_url
        AMQP_EXCHANGE    = var.amqp_exchange
      }

      template {
        destination = "local/log.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          LOG_LEVEL={{ keyOrDefault "portico/products/log_level" "info" }}
        EOT
      }

      kill_timeout = "30s"

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }

  group "edge" {
    count = var.edge_count

    network {
      mode = "bridge"
    }

    shutdown_delay = "5s"

    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "delay"
    }

    service {
      name     = "edge"
      provider = "consul"
      port     = "8090"
      tags     = ["portico"]

      # No "openapi" meta: the edge's merged document is not one more
      # service document to merge.
      meta {
        version = var.version
      }

      connect {
        sidecar_service {
          proxy {
            # The edge forwards cache misses and fetches API documents
            # through these listeners (EDGE_UPSTREAMS below). Intentions
            # allow the edge GET and HEAD only.
            upstreams {
              destination_name = "users"
              local_bind_port  = 19201
            }
            upstreams {
              destination_name = "products"
              local_bind_port  = 19202
            }
          }
        }

        sidecar_task {
          resources {
            cpu    = 100
            memory = 64
          }
        }
      }

      check {
        name     = "edge ready"
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
        expose   = true
      }
    }

    task "edge" {
      driver = "docker"

      config {
        image = local.image.edge
      }

      env {
        HTTP_ADDR = "127.0.0.1:8090"
        # Empty: no self-registration, and the API documents are the
        # upstreams' /openapi.json (EDGE_DOCS_SERVICES' default) instead of
        # a catalog query.
        CONSUL_HTTP_ADDR = ""
        EDGE_UPSTREAMS   = "users=${NOMAD_UPSTREAM_ADDR_users},products=${NOMAD_UPSTREAM_ADDR_products}"
        REDIS_URL        = var.edge_redis_url
        AMQP_URL         = var.amqp_url
        AMQP_EXCHANGE    = var.amqp_exchange
      }

      template {
        destination = "local/log.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          LOG_LEVEL={{ keyOrDefault "portico/edge/log_level" "info" }}
        EOT
      }

      kill_timeout = "30s"

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }

  # The gateway: the control plane, the rate-limit service and the ingress
  # Envoy share one network namespace, so xDS and rate-limit checks stay on
  # the allocation's loopback, as in `make up`.
  group "gateway" {
    count = 1

    # Two canaries cannot share the static port on one node: replace in
    # place instead.
    update {
      canary       = 0
      auto_promote = false
      max_parallel = 1
    }

    network {
      mode = "bridge"

      port "http" {
        static = var.ingress_port
        to     = 5000
      }
      # /stats/prometheus of the ingress Envoy, nothing else of its admin API.
      port "metrics" {
        to = 19100
      }
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    # The ingress in the catalog for its health only: it has no Connect
    # instance, so the control plane never routes to it. The control plane
    # fetches the ingress's leaf certificate under the same name
    # (INGRESS_SERVICE), which intentions allow to call users, products and
    # the edge. /healthz answers once the control plane's listener is live.
    service {
      name     = "ingress"
      provider = "consul"
      port     = "http"
      tags     = ["portico"]

      check {
        name     = "ingress serving"
        type     = "http"
        path     = "/healthz"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "controlplane" {
      driver = "docker"

      # Up before the Envoys it configures, for as long as they run.
      lifecycle {
        hook    = "prestart"
        sidecar = true
      }

      config {
        image = local.image.controlplane
      }

      env {
        CONSUL_HTTP_ADDR    = local.consul_http_addr
        XDS_ADDR            = "127.0.0.1:18000"
        ADMIN_ADDR          = "127.0.0.1:18001"
        INGRESS_LISTEN_ADDR = "0.0.0.0:5000"
        INGRESS_SERVICE     = "ingress"
        RATELIMIT_ADDR      = "127.0.0.1:18081"
      }

      template {
        destination = "local/log.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          LOG_LEVEL={{ keyOrDefault "portico/controlplane/log_level" "info" }}
        EOT
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }

    task "ratelimit" {
      driver = "docker"

      config {
        image = local.image.ratelimit
      }

      # Counters in Redis, limits from the control plane over xDS, every
      # listener on the allocation's loopback: what mesh/localenv runs.
      env {
        HOST                                          = "127.0.0.1"
        PORT                                          = "18082"
        GRPC_HOST                                     = "127.0.0.1"
        GRPC_PORT                                     = "18081"
        DEBUG_HOST                                    = "127.0.0.1"
        DEBUG_PORT                                    = "18083"
        USE_STATSD                                    = "false"
        USE_PROMETHEUS                                = "true"
        PROMETHEUS_ADDR                               = "127.0.0.1:18084"
        LOG_LEVEL                                     = "warn"
        LOG_FORMAT                                    = "json"
        BACKEND_TYPE                                  = "redis"
        REDIS_SOCKET_TYPE                             = "tcp"
        REDIS_URL                                     = var.ratelimit_redis_addr
        CONFIG_TYPE                                   = "GRPC_XDS_SOTW"
        CONFIG_GRPC_XDS_NODE_ID                       = "ratelimit"
        CONFIG_GRPC_XDS_SERVER_URL                    = "127.0.0.1:18000"
        CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL = "1s"
        XDS_CLIENT_BACKOFF_INITIAL_INTERVAL           = "500ms"
        XDS_CLIENT_BACKOFF_MAX_INTERVAL               = "5s"
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }

    task "ingress" {
      driver = "docker"

      config {
        image = var.envoy_image
        args = [
          "--config-path", "${NOMAD_TASK_DIR}/bootstrap.yaml",
          "--disable-hot-restart",
          "--log-level", "warn",
        ]
      }

      # The bootstrap envoy.Ingress renders for `make up` (envoy/bootstrap.go),
      # with the node id and the outlier log of this allocation; everything
      # else comes from the control plane. nomad/jobs_test.go keeps it equal.
      template {
        destination = "local/bootstrap.yaml"
        change_mode = "restart"
        data        = <<-EOT
          # Bootstrap of the Portico ingress Envoy. Everything else (listener,
          # routes, clusters, endpoints, certificates) comes from the control plane
          # over ADS. Rendered by `envoy.Ingress` (envoy/bootstrap.go); the fields
          # in double braces are its parameters.
          node:
            id: {{ env "NOMAD_ALLOC_ID" }}
            # The control plane serves one snapshot per node cluster.
            cluster: ingress
          admin:
            # Loopback only: the admin API can change Envoy's state.
            address:
              socket_address: { address: 127.0.0.1, port_value: 19000 }
          cluster_manager:
            # One JSON line per ejection and return of an instance.
            outlier_detection:
              event_log_path: {{ env "NOMAD_ALLOC_DIR" }}/logs/ingress-outlier.log
          dynamic_resources:
            ads_config:
              api_type: GRPC
              transport_api_version: V3
              set_node_on_first_message_only: true
              grpc_services:
                - envoy_grpc: { cluster_name: portico-xds }
            cds_config: { resource_api_version: V3, ads: {} }
            lds_config: { resource_api_version: V3, ads: {} }
          static_resources:
            clusters:
              - name: portico-xds
                type: STRICT_DNS
                connect_timeout: 1s
                typed_extension_protocol_options:
                  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
                    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
                    explicit_http_config: { http2_protocol_options: {} }
                load_assignment:
                  cluster_name: portico-xds
                  endpoints:
                    - lb_endpoints:
                        - endpoint:
                            address:
                              socket_address: { address: 127.0.0.1, port_value: 18000 }
              - name: envoy-admin
                type: STATIC
                connect_timeout: 1s
                load_assignment:
                  cluster_name: envoy-admin
                  endpoints:
                    - lb_endpoints:
                        - endpoint:
                            address:
                              socket_address: { address: 127.0.0.1, port_value: 19000 }
            listeners:
              # Prometheus reads Envoy's metrics here; nothing else of the admin API
              # is reachable.
              - name: metrics
                address:
                  socket_address: { address: 0.0.0.0, port_value: 19100 }
                filter_chains:
                  - filters:
                      - name: envoy.filters.network.http_connection_manager
                        typed_config:
                          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                          stat_prefix: metrics
                          route_config:
                            virtual_hosts:
                              - name: metrics
                                domains: ["*"]
                                routes:
                                  - match: { path: /stats/prometheus }
                                    route: { cluster: envoy-admin }
                          http_filters:
                            - name: envoy.filters.http.router
                              typed_config:
                                "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
        EOT
      }

      resources {
        cpu    = 300
        memory = 128
      }
    }
  }
}
