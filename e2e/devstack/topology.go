package main

import (
	"fmt"
	"path/filepath"
)

// Fixed loopback ports, away from the defaults of system instances, so the
// stack never collides with a PostgreSQL, Redis or RabbitMQ already there.
const (
	postgresPort       = 55432
	rabbitMQPort       = 55672
	rabbitMQManagement = 15672 // the port the seed documents for the UI
	redisPort          = 56379
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

// serviceSpec is one Portico service process.
type serviceSpec struct {
	Name     string // instance name, unique
	Binary   string // under bin/
	Addr     string // HTTP listen address
	Database string
	Env      []string
}

func (s serviceSpec) URL() string { return "http://" + s.Addr }

func databaseURL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", postgresPort, db)
}

func amqpURL() string {
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", rabbitMQPort)
}

// services lists the service instances, in start order.
func services(l layout, admin adminCredentials) []serviceSpec {
	return []serviceSpec{
		{
			Name: "users", Binary: "users", Addr: "127.0.0.1:8081", Database: "users",
			Env: []string{
				"JWT_KEYS_DIR=" + filepath.Join(l.Keys, "users"),
				"BOOTSTRAP_ADMIN_EMAIL=" + admin.Email,
				"BOOTSTRAP_ADMIN_PASSWORD=" + admin.Password,
			},
		},
		{Name: "products", Binary: "products", Addr: "127.0.0.1:8082", Database: "products"},
	}
}
