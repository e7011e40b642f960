package localenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestJaeger sends a parent and a child span over OTLP/HTTP (JSON, as
// any SDK could) and reads the trace back through the query API, then
// restarts Jaeger on the same ports with an empty store.
func TestJaeger(t *testing.T) {
	t.Parallel()
	start := time.Now()
	j, err := StartJaeger(startCtx(t), JaegerOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("jaeger: start took %v", time.Since(start))
	t.Cleanup(func() {
		if err := j.Stop(stopCtx(t)); err != nil {
			t.Error(err)
		}
	})

	const traceID, parent, child = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "0102030405060708"
	postSpans(t, j, traceID, parent, child)
	var spans []TraceSpan
	err = Poll(t.Context(), 100*time.Millisecond, func(ctx context.Context) error {
		spans, err = j.Trace(ctx, traceID)
		if err == nil && len(spans) < 2 {
			err = fmt.Errorf("%d of 2 spans stored", len(spans))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]TraceSpan{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	p, c := byID[parent], byID[child]
	if p.Service != "probe" || p.Operation != "parent" || p.ParentID != "" {
		t.Errorf("parent span %+v", p)
	}
	if c.Service != "probe" || c.Operation != "child" || c.ParentID != parent || c.Tags["route.name"] != "products" {
		t.Errorf("child span %+v, want a child of %s with route.name products", c, parent)
	}

	if _, err := j.Trace(t.Context(), "00000000000000000000000000000001"); !errors.Is(err, ErrTraceNotFound) {
		t.Errorf("unknown trace: %v, want ErrTraceNotFound", err)
	}

	// The store is memory: a restart on the same ports starts empty.
	query := j.QueryURL()
	if err := j.Stop(stopCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := j.Start(startCtx(t)); err != nil {
		t.Fatal(err)
	}
	if j.QueryURL() != query {
		t.Errorf("query URL changed from %s to %s", query, j.QueryURL())
	}
	if _, err := j.Trace(t.Context(), traceID); !errors.Is(err, ErrTraceNotFound) {
		t.Errorf("trace after restart: %v, want ErrTraceNotFound", err)
	}
}

// postSpans exports two spans in OTLP/JSON to Jaeger's OTLP/HTTP receiver.
func postSpans(t *testing.T, j *Jaeger, traceID, parent, child string) {
	t.Helper()
	now := time.Now().UnixNano()
	ns := func(d time.Duration) string { return strconv.FormatInt(now+int64(d), 10) }
	body := fmt.Sprintf(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"probe"}}]},
"scopeSpans":[{"scope":{"name":"test"},"spans":[
{"traceId":%[1]q,"spanId":%[2]q,"name":"parent","kind":2,"startTimeUnixNano":%[4]q,"endTimeUnixNano":%[5]q},
{"traceId":%[1]q,"spanId":%[3]q,"parentSpanId":%[2]q,"name":"child","kind":3,"startTimeUnixNano":%[4]q,"endTimeUnixNano":%[6]q,
 "attributes":[{"key":"route.name","value":{"stringValue":"products"}}]}]}]}]}`,
		traceID, parent, child, ns(0), ns(10*time.Millisecond), ns(5*time.Millisecond))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, j.OTLPEndpoint()+"/v1/traces", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("OTLP export: %d", resp.StatusCode)
	}
}
