// Command benchcache prints the latency of edge cache hits and misses
// (median and p99) and their ratio, measured side by side on one URL.
//
//	go run ./edge/cmd/benchcache -url http://127.0.0.1:5000/api/products/products/1 \
//	    -H "Authorization: Bearer $TOKEN" -n 1000
//
// Misses are made by adding a unique query parameter, which the services
// ignore and the cache keys on. Requests run one at a time: the numbers
// are latencies, not throughput.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/portico-mesh/portico/edge/cachebench"
)

// headerFlags collects repeated -H "Name: value" flags.
type headerFlags http.Header

func (h headerFlags) String() string { return "" }

func (h headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("header %q: want \"Name: value\"", v)
	}
	http.Header(h).Add(strings.TrimSpace(name), strings.TrimSpace(value))
	return nil
}

func main() {
	header := headerFlags{}
	target := flag.String("url", "", "a cacheable GET URL (through the ingress, or the edge with -H X-Portico-Upstream: ...)")
	n := flag.Int("n", 1000, "hits and misses to measure (each)")
	timeout := flag.Duration("timeout", 10*time.Second, "timeout of each request")
	flag.Var(header, "H", "request header \"Name: value\" (repeatable)")
	flag.Parse()
	if *target == "" {
		fmt.Fprintln(os.Stderr, "benchcache: -url is required")
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := cachebench.Run(ctx, cachebench.Config{
		URL: *target, Requests: *n, Header: http.Header(header), Timeout: *timeout,
		Client: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		stop()
		os.Exit(1)
	}
	fmt.Printf("%s (%d hits and %d misses, alternating)\n", *target, res.Hit.N, res.Miss.N)
	res.Print(os.Stdout)
}
