package faults_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// envoyStat reads one counter or gauge of the ingress's admin interface
// (0 when Envoy has not created it yet).
func envoyStat(t *testing.T, name string) int {
	t.Helper()
	b := getBody(t, sys.ingress.AdminURL()+"/stats?filter=^"+name+"$")
	_, value, ok := strings.Cut(strings.TrimSpace(string(b)), ": ")
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(value)
	return n
}

// served sums what an instance's own http_requests_total counted on the
// products API (its probes and metrics excluded).
func served(t *testing.T, instanceURL string) (float64, error) {
	t.Helper()
	resp, err := http.Get(instanceURL + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "http_requests_total{") || !strings.Contains(line, `route="/products`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

func getBody(t *testing.T, url string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(context.WithoutCancel(t.Context()), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
