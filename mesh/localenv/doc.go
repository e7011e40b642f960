// Package localenv starts real PostgreSQL, Redis and RabbitMQ server
// processes on loopback, each on private ports and in a private directory,
// for integration tests and for a local development runner.
//
// There is no Docker: the servers are the Debian binaries installed on the
// machine, and Consul, Envoy, ratelimit and Jaeger (the trace backend) from
// .cache/bin (`make deps` installs them all on a fresh one). Every server
//
//   - listens on 127.0.0.1 only, on a port the caller chooses or FreePort picks;
//   - keeps all of its state (data, sockets, configuration, logs) under the
//     Dir given in its options, so nothing touches /etc or /var of the host;
//   - runs in its own process group with a parent-death signal, so it goes
//     away when the process that started it dies, even without a clean Stop;
//   - is waited for with a real client (pgx, a Redis PING, an AMQP handshake)
//     before Start returns, within the deadline of the caller's context;
//   - reports start failures together with the tail of its log file.
//
// Nothing in this package keeps global state: each started server is a value
// that owns its processes, and stopping it stops them.
package localenv
