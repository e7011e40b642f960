# A Nomad dev agent (server and client on one machine) that places
# portico.nomad.hcl: the Docker driver, bridge networking through the CNI
# reference plugins, and Consul Connect against a local Consul agent.
# e2e/nomad (make test-nomad) runs exactly this file, with a second file
# of its own for the ports and directories it picks:
#
#   sudo nomad agent -dev-connect -config nomad/agent.dev.hcl
#
# -dev-connect: a dev agent (in-memory state, server and client) whose
# client fingerprints the machine's default network interface instead of
# loopback, so that Consul publishes the allocations' sidecars at an
# address other allocations can reach. It needs root (network namespaces)
# and `consul` on PATH (Nomad bootstraps the sidecars with `consul connect
# envoy`). Not for production: see nomad/README.md.

# A dev agent keeps its data in a new temporary directory. One set with
# data_dir must stay short (37 bytes at most): the client listens on Unix
# sockets at <data_dir>/alloc/<id>/alloc/tmp/consul_grpc.sock, and a
# socket path holds 107 bytes.

# The API and RPC on loopback only: nothing in the allocations talks to
# Nomad. (-dev-connect would bind every address; with several interfaces
# the advertised address is then ambiguous.)
bind_addr = "127.0.0.1"

client {
  # Debian's containernetworking-plugins (.ci/install-docker.sh) installs
  # the CNI plugins here, not in Nomad's default /opt/cni/bin.
  cni_path = "/usr/lib/cni"

  options {
    # The cloud detectors probe metadata endpoints; where none answers
    # they only slow the start down, and an AWS_CA_BUNDLE in the
    # environment makes env_aws fail the fingerprint.
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }

  meta {
    # The Connect sidecars' Envoy: the version .ci/install-envoy.sh pins and
    # the job's ingress runs (variable envoy_image), not Nomad's default
    # (the newest Envoy the Consul agent supports, which may be a version
    # no registry here has).
    "connect.sidecar_image" = "envoyproxy/envoy:v1.36.4"
  }
}

plugin "docker" {
  config {
    # The container that holds each bridge-mode allocation's network
    # namespace: Nomad's default, named here because mesh/images builds a
    # stand-in under this name where no registry has it.
    infra_image = "registry.k8s.io/pause-amd64:3.3"

    gc {
      # Keep images when their last task stops: a locally built image
      # (mesh/images, `docker compose build`) cannot be pulled back.
      image = false
    }
  }
}

# The local Consul agent: HTTP for registrations and KV, plaintext gRPC for
# the sidecars' xDS (Nomad hands each allocation a socket that forwards to
# it). Consul's defaults; the agent must run with Connect enabled.
consul {
  address      = "127.0.0.1:8500"
  grpc_address = "127.0.0.1:8502"
}
