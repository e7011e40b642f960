package entries_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/mesh/entries"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

func TestMain(m *testing.M) {
	os.Exit(localenvtest.Run(m, localenvtest.Consul))
}

func TestLoad(t *testing.T) {
	list, err := entries.Load()
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	intentions := map[string]*api.ServiceIntentionsConfigEntry{}
	for _, e := range list {
		kinds = append(kinds, e.Entry.GetKind())
		if si, ok := e.Entry.(*api.ServiceIntentionsConfigEntry); ok {
			intentions[si.Name] = si
		}
	}
	// Defaults first, then resolvers, then intentions.
	if !slices.IsSortedFunc(kinds, func(a, b string) int { return rank(a) - rank(b) }) {
		t.Errorf("entries out of order: %v", kinds)
	}
	deny := intentions["*"]
	if deny == nil || len(deny.Sources) != 1 || deny.Sources[0].Name != "*" || deny.Sources[0].Action != api.IntentionActionDeny {
		t.Errorf("no default deny: %+v", deny)
	}
	for _, dest := range []string{"users", "products"} {
		si := intentions[dest]
		if si == nil {
			t.Fatalf("no intentions for %s", dest)
		}
		for _, src := range si.Sources {
			if src.Name != "edge" {
				continue
			}
			// Allow GET and HEAD, then deny the rest explicitly: what
			// matches no permission would fall back to the agent's
			// default policy (allow without ACLs), not to the * deny.
			p := src.Permissions
			if len(p) != 2 || p[0].Action != api.IntentionActionAllow || !slices.Equal(p[0].HTTP.Methods, []string{"GET", "HEAD"}) ||
				p[1].Action != api.IntentionActionDeny || p[1].HTTP.PathPrefix != "/" {
				t.Errorf("edge -> %s is not limited to GET and HEAD: %+v", dest, p)
			}
		}
	}
}

func rank(kind string) int {
	switch kind {
	case api.ProxyDefaults:
		return 0
	case api.ServiceDefaults:
		return 1
	case api.ServiceResolver:
		return 2
	default:
		return 3
	}
}

// TestApply writes the entries twice through the API and reads them back.
func TestApply(t *testing.T) {
	client := localenvtest.ConsulClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for range 2 {
		if err := entries.Apply(ctx, client, entries.TracingCollector("127.0.0.1:14317")); err != nil {
			t.Fatal(err)
		}
	}
	e, _, err := client.ConfigEntries().Get(api.ServiceResolver, "users_service", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := e.(*api.ServiceResolverConfigEntry); r.Redirect == nil || r.Redirect.Service != "users" {
		t.Errorf("users_service resolver = %+v", r)
	}
	// L4 view only: an L7 rule (edge -> users) is decided per request in
	// the sidecar, which e2e/mesh tests.
	for _, pair := range [][2]string{{"ingress", "users"}, {"ingress", "products"}, {"ingress", "edge"}} {
		ok, _, err := client.Connect().IntentionCheck(&api.IntentionCheck{Source: pair[0], Destination: pair[1]}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Errorf("%s -> %s is denied", pair[0], pair[1])
		}
	}
	for _, pair := range [][2]string{{"users", "products"}, {"products", "users"}, {"edge", "ingress"}} {
		ok, _, err := client.Connect().IntentionCheck(&api.IntentionCheck{Source: pair[0], Destination: pair[1]}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			t.Errorf("%s -> %s is allowed; the default is deny", pair[0], pair[1])
		}
	}
}

// TestConsulConfigWrite applies the files the way operators do, with the
// consul CLI, to a private agent.
func TestConsulConfigWrite(t *testing.T) {
	agent := localenvtest.StartConsul(t)
	files, err := filepath.Glob("*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("entry files: %v %v", files, err)
	}
	slices.Sort(files)
	for _, f := range files {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		cmd := exec.CommandContext(ctx, agent.Binary(), "config", "write", f)
		cmd.Env = agent.CLIEnv()
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("consul config write %s: %v\n%s", f, err, out)
		}
	}
	client, err := agent.Client()
	if err != nil {
		t.Fatal(err)
	}
	list, _, err := client.ConfigEntries().List(api.ServiceIntentions, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 4 {
		t.Errorf("%d service-intentions entries after consul config write, want 4", len(list))
	}
}

// TestTracingCollector: the sidecars' tracer and access log come from
// proxy-defaults, and the option moves the collector without touching the
// rest of the cluster; a bad address is refused.
func TestTracingCollector(t *testing.T) {
	list, err := entries.Load()
	if err != nil {
		t.Fatal(err)
	}
	pd := list[0].Entry.(*api.ProxyConfigEntry)
	if s, _ := pd.Config["envoy_tracing_json"].(string); !strings.Contains(s, "envoy.tracers.opentelemetry") || !strings.Contains(s, entries.CollectorCluster) {
		t.Errorf("envoy_tracing_json = %q, want the OpenTelemetry tracer sending to %s", s, entries.CollectorCluster)
	}
	if !strings.Contains(pd.AccessLogs.JSONFormat, `"trace_id":"%TRACE_ID%"`) {
		t.Errorf("the sidecars' access log format has no trace id: %s", pd.AccessLogs.JSONFormat)
	}
	if err := entries.TracingCollector("127.0.0.1:14317")(list); err != nil {
		t.Fatal(err)
	}
	var cluster map[string]any
	if err := json.Unmarshal([]byte(pd.Config["envoy_extra_static_clusters_json"].(string)), &cluster); err != nil {
		t.Fatal(err)
	}
	sock := cluster["loadAssignment"].(map[string]any)["endpoints"].([]any)[0].(map[string]any)["lbEndpoints"].([]any)[0].(map[string]any)["endpoint"].(map[string]any)["address"].(map[string]any)["socketAddress"].(map[string]any)
	if sock["address"] != "127.0.0.1" || sock["portValue"] != float64(14317) {
		t.Errorf("collector socket address = %v", sock)
	}
	if cluster["name"] != entries.CollectorCluster || cluster["typedExtensionProtocolOptions"] == nil ||
		cluster["loadAssignment"].(map[string]any)["clusterName"] != entries.CollectorCluster {
		t.Errorf("the rewrite lost parts of the cluster: %v", cluster)
	}
	for _, bad := range []string{"jaeger", ":4317", "jaeger:0"} {
		if err := entries.TracingCollector(bad)(list); err == nil {
			t.Errorf("collector %q accepted", bad)
		}
	}
}
