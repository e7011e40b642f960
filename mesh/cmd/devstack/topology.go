package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// Fixed loopback ports, away from the defaults of system instances, so the
// stack never collides with a PostgreSQL, Redis or RabbitMQ already there.
const (
	postgresPort       = 55432
	rabbitMQPort       = 55672
	rabbitMQManagement = 15672 // the port the seed documents for the UI
	redisPort          = 56379
	// consulHTTPPort serves Consul's HTTP API and UI, on the port the seed
	// documents. Every other Consul port is private and picked at start.
	consulHTTPPort = 8500
	// checkInterval paces the Consul checks of the services and their
	// sidecars: a stopped instance leaves its callers' endpoints within
	// about this long.
	checkInterval = 2 * time.Second
)

// layout names every path the stack uses; all of it is under .run/.
type layout struct {
	Root    string // the repository
	Run     string // .run
	State   string // supervisor state and pid
	Logs    string
	Data    string
	Keys    string
	Bin     string
	PIDFile string
}

func newLayout(root string) layout {
	run := filepath.Join(root, ".run")
	state := filepath.Join(run, "devstack")
	return layout{
		Root:    root,
		Run:     run,
		State:   state,
		Logs:    filepath.Join(run, "logs"),
		Data:    filepath.Join(run, "data"),
		Keys:    filepath.Join(run, "keys"),
		Bin:     filepath.Join(root, "bin"),
		PIDFile: filepath.Join(state, "supervisor.pid"),
	}
}

func (l layout) stateFile() string     { return filepath.Join(l.State, "state.json") }
func (l layout) adminFile() string     { return filepath.Join(l.State, "admin.env") }
func (l layout) supervisorLog() string { return filepath.Join(l.Logs, "devstack.log") }
func (l layout) logFile(name string) string {
	return filepath.Join(l.Logs, name+".log")
}

// component is one part of the stack. The supervisor starts components in
// list order, each once the previous one is ready, and stops whatever they
// tracked in reverse order.
type component struct {
	name  string
	start func(s *supervisor, ctx context.Context) error
}

// components is what `make up` runs, each after what it depends on: Jaeger
// comes first, so every process exports its spans to it; the control plane
// needs the catalog, the rate-limit service its limits from
// the control plane, the ingress both.
func components() []component {
	return []component{
		{"jaeger", (*supervisor).startJaeger},
		{"postgres", (*supervisor).startPostgres},
		{"rabbitmq", (*supervisor).startRabbitMQ},
		{"redis", (*supervisor).startRedis},
		{"consul", (*supervisor).startConsul},
		{"mesh config", (*supervisor).applyMeshConfig},
		{"services", (*supervisor).startServices},
		{"edge", (*supervisor).startEdge},
		{"controlplane", (*supervisor).startControlPlane},
		{"ratelimit", (*supervisor).startRateLimit},
		{"ingress", (*supervisor).startIngress},
		{"prometheus", (*supervisor).startPrometheus},
	}
}

// serviceSpec is one Portico service instance and its sidecar.
type serviceSpec struct {
	ID       string // instance id: Consul service id, process and log name
	Service  string // Consul service name
	Binary   string // under bin/
	Port     int    // HTTP port, loopback only
	Database string
	// SidecarPort is the sidecar's public mTLS listener, AdminPort its
	// Envoy admin API.
	SidecarPort int
	AdminPort   int
	Env         []string
}

func databaseURL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", postgresPort, db)
}

func amqpURL() string {
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", rabbitMQPort)
}

// services lists the service instances, in start order. Two products
// instances share one database and run side by side behind the mesh.
func services(l layout, admin adminCredentials) []serviceSpec {
	return []serviceSpec{
		{
			ID: "users", Service: "users", Binary: "users", Port: 8081, Database: "users",
			SidecarPort: 21081, AdminPort: 19081,
			Env: []string{
				"JWT_KEYS_DIR=" + filepath.Join(l.Keys, "users"),
				"BOOTSTRAP_ADMIN_EMAIL=" + admin.Email,
				"BOOTSTRAP_ADMIN_PASSWORD=" + admin.Password,
			},
		},
		{
			ID: "products-1", Service: "products", Binary: "products", Port: 8082, Database: "products",
			SidecarPort: 21082, AdminPort: 19082,
		},
		{
			ID: "products-2", Service: "products", Binary: "products", Port: 8083, Database: "products",
			SidecarPort: 21083, AdminPort: 19083,
		},
	}
}
