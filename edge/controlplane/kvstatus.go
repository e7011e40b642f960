package controlplane

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/edge/controlplane/reconcile"
)

// kvStatus writes the configuration status as JSON to a KV key next to the
// document, where the operator who wrote it looks.
type kvStatus struct {
	kv  *api.KV
	key string
}

func (s kvStatus) WriteStatus(ctx context.Context, st reconcile.ConfigStatus) error {
	body, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(&api.KVPair{Key: s.key, Value: body}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("write %s: %w", s.key, err)
	}
	return nil
}
