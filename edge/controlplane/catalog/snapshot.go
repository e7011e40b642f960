package catalog

import (
	"crypto/sha256"
	"encoding/json"
	"time"
)

// Snapshot is what the translator needs from Consul. It is deterministic:
// every slice is sorted and every field is normalized, so two snapshots of
// the same catalog state are equal, and one is published only when its
// content differs from the previous one.
//
// A published Snapshot is never modified by the Watcher afterwards; its
// receiver must not modify it either (it may be shared between stages).
type Snapshot struct {
	// Datacenter is the local agent's datacenter.
	Datacenter string
	// TrustDomain is the Connect trust domain, from the CA roots.
	TrustDomain string
	// Services are the Connect-capable services: those with at least one
	// sidecar proxy or Connect-native instance registered, healthy or not.
	// Sorted by Name.
	Services []Service
	// Leaf is the ingress's own Connect leaf certificate.
	Leaf Leaf
	// RootsPEM are all trusted CA roots: the active one first, then the
	// others by CA root ID.
	RootsPEM []string
	// Config is the raw edge configuration document from KV.
	Config ConfigDoc
}

// Service is one Connect-capable service.
type Service struct {
	Name string
	// Meta is merged from all of the service's Connect instances (a sidecar
	// inherits its service's meta): for each key the value most instances
	// agree on wins, ties going to the smallest value, so a rolling upgrade
	// gives the same answer whatever the order instances are listed in.
	// Nil when no instance has meta.
	Meta map[string]string
	// Endpoints are the public listeners of the sidecars (or Connect-native
	// instances) whose checks, node checks included, all pass. Sorted by
	// Address, then Port, then InstanceID. Empty, not absent, when no
	// instance is healthy.
	Endpoints []Endpoint
}

// Endpoint is one healthy sidecar's public listener.
type Endpoint struct {
	// Address is the proxy's service address, or its node's address when
	// the proxy registered none.
	Address string
	Port    int
	// InstanceID is "<node>/<service instance ID>" of the instance the
	// sidecar fronts (the proxy's destination service ID, or the native
	// instance's own ID): unique in the datacenter, and the name operators
	// know the instance by.
	InstanceID string
}

// Leaf is a Connect leaf certificate and its private key.
type Leaf struct {
	CertPEM string
	KeyPEM  string
	// ValidBefore is the end of validity, in UTC. The agent renews the
	// certificate before then, and the Watcher follows the renewal.
	ValidBefore time.Time
	// SpiffeID is the certificate's URI SAN, the ingress's identity.
	SpiffeID string
}

// ConfigDoc is the edge configuration document as stored in KV, unparsed:
// validating it is the next stage's job, so that a bad document can be
// rejected and reported there while the last good one keeps serving.
type ConfigDoc struct {
	// Present is false when the key does not exist.
	Present bool
	Value   []byte
	// ModifyIndex is the KV entry's modify index, for reporting which
	// revision was applied or rejected. (Consul ignores a write of
	// identical bytes: it makes no new revision and no publish.)
	ModifyIndex uint64
}

// contentHash is a digest of the snapshot's whole content. Snapshots are
// compared by it rather than kept around for a deep comparison; the JSON
// encoding is canonical here because slices are sorted and encoding/json
// writes map keys in order.
func (s Snapshot) contentHash() ([sha256.Size]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(b), nil
}
