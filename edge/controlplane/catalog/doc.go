// Package catalog is the watch stage of the edge control plane. It follows
// everything the ingress's configuration depends on in Consul and publishes
// it as immutable, deterministic snapshots; translating them is the next
// stage's job, serving the result the one after (as Consul keeps its
// proxycfg watching apart from its xds building).
//
// # What is watched
//
// One blocking query each, through the local agent:
//
//   - the service list (/v1/catalog/services, filtered to ordinary
//     services: no proxies, no gateways; "consul" left out), and for each
//     service in it the Connect health of its instances
//     (/v1/health/connect/<name>), started and stopped as services come and
//     go;
//   - the ingress's own Connect leaf certificate
//     (/v1/agent/connect/ca/leaf/<IngressService>), which the agent renews
//     before expiry and on CA rotation;
//   - the CA roots (/v1/agent/connect/ca/roots), with the trust domain;
//   - the edge configuration document (KV ConfigKey), raw.
//
// The datacenter is read once from /v1/agent/self.
//
// # Blocking queries
//
// Every query is a services/platform/consulwatch Watch (queries.go builds
// them), so the blocking-query discipline lives once for the whole
// platform: wait on the last answer's index; an unchanged index is a
// timeout, not news; an index that goes backwards or is 0 resets the wait
// to 0 (with a pause, so a broken index cannot make a busy loop); after a
// failure the next query also starts from 0, because the agent may come
// back with lower indexes; failures are retried with the platform's
// capped, jittered exponential backoff, reset by a success; every query
// carries the Run context and a deadline, so shutdown interrupts it.
//
// # Publishing
//
// Answers are converted (sorted, normalized) as they arrive and kept in one
// state. A change starts a coalescing window (Config.Coalesce); at its end
// one snapshot is built and published only if its content hash differs
// from the last published one, so answers that change nothing (a timeout,
// a health check's new output, a service without Connect) never publish.
// The first snapshot waits until every watch, the health of every service
// then listed included, has answered once.
//
// # Metrics
//
//   - portico_catalog_query_errors_total{watch}
//   - portico_catalog_query_updates_total{watch}
//   - portico_catalog_index_resets_total{watch}
//   - portico_catalog_snapshot_publishes_total
//   - portico_catalog_watched_services
//
// where watch is one of services, health, leaf, roots, config and agent.
package catalog
