// Package faults is the fault matrix: black-box tests that break one part
// of a running Portico (an instance killed, an invalid edge configuration,
// the control plane and Consul's agent restarted, Redis, PostgreSQL and
// RabbitMQ down) under a steady client load through the ingress, and
// assert on what the clients counted: requests, failures by status,
// transport errors, lost and duplicated events. TestMain prints the
// table of every case run.
//
// The stack is mesh/localenv/stack's, as `make up` builds it (the control
// plane runs as its command, so that a case can stop and restart it), on
// free ports.
package faults
