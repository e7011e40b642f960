package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/services/platform/registry"
)

func TestLoadConfig(t *testing.T) {
	cfg, err := loadConfig([]string{"EDGE_UPSTREAMS=users=127.0.0.1:19001,products=127.0.0.1:19002"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:8090" || cfg.RedisTimeout != 250*time.Millisecond || cfg.PurgeQueue != "edge.cache-purge" ||
		cfg.AMQPExchange != "portico.events" || cfg.SwaggerUIDir != apidocs.DefaultAssetsDir || cfg.Consul.ConsulHTTPAddr != "" {
		t.Errorf("defaults: %+v", cfg)
	}
	docs, err := docSources(cfg)
	if err != nil || len(docs) != 2 || docs[0] != (apidocs.Source{Service: "products", Path: "/openapi.json"}) {
		t.Errorf("default documents %v, %v", docs, err)
	}

	cfg, err = loadConfig([]string{"EDGE_UPSTREAMS=users=127.0.0.1:19001", "EDGE_DOCS_SERVICES=users=/docs/openapi.json"})
	if err != nil {
		t.Fatal(err)
	}
	if docs, _ := docSources(cfg); len(docs) != 1 || docs[0].Path != "/docs/openapi.json" {
		t.Errorf("documents %v", docs)
	}

	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "EDGE_UPSTREAMS"},
		{[]string{"EDGE_UPSTREAMS=users"}, "EDGE_UPSTREAMS"},
		{[]string{"EDGE_UPSTREAMS=users=127.0.0.1:1", "EDGE_DOCS_SERVICES=products=/openapi.json"}, "EDGE_DOCS_SERVICES"},
		{[]string{"EDGE_UPSTREAMS=users=127.0.0.1:1", "EDGE_DOCS_SERVICES=users=openapi.json"}, "EDGE_DOCS_SERVICES"},
		{[]string{"EDGE_UPSTREAMS=users=127.0.0.1:1", "REDIS_URL=http://x"}, "REDIS_URL"},
		{[]string{"EDGE_UPSTREAMS=users=127.0.0.1:1", "EDGE_REDIS_TIMEOUT=0s"}, "EDGE_REDIS_TIMEOUT"},
		{[]string{"EDGE_UPSTREAMS=users=127.0.0.1:1", "EDGE_CACHE_MAX_ENTRY_BYTES=0"}, "EDGE_CACHE_MAX_ENTRY_BYTES"},
	} {
		if _, err := loadConfig(tc.env); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.env, err, tc.want)
		}
	}
}

// Only upstreams at loopback addresses are the sidecar's listeners, to be
// created by the registration.
func TestSidecarUpstreams(t *testing.T) {
	got := sidecarUpstreams("users=127.0.0.1:19001,products=[::1]:19002,docs=10.0.0.5:80")
	want := []registry.Upstream{{Service: "products", LocalPort: 19002}, {Service: "users", LocalPort: 19001}}
	if !slices.Equal(got, want) {
		t.Errorf("sidecar upstreams %+v, want %+v", got, want)
	}
	if got := sidecarUpstreams("not a spec"); got != nil {
		t.Errorf("an invalid spec gave %+v", got)
	}
}
