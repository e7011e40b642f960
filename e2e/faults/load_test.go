package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

// loadConfig is a steady client load through the ingress.
type loadConfig struct {
	// Rate is requests started per second.
	Rate int
	// WriteEvery makes every n-th request a product creation (POST);
	// zero sends reads only. Every write carries an Idempotency-Key of
	// its own, also the first word of the product's name (keyCounts).
	WriteEvery int
	// Observe, when set, sees every reply with the time its request was
	// sent (the case checks what it needs: a header, a problem type).
	Observe func(req request, rep reply, sent time.Time)
}

// tally is what a load counted.
type tally struct {
	Requests  int
	Transport int         // requests with no HTTP reply (refused, reset, timed out)
	Status    map[int]int // replies by status
	Writes    int
	// FailedWrites are the writes among the non-2xx and transport errors.
	FailedWrites int
	// Created are the ids of the products answered 201.
	Created []int64
	// Keys are the Idempotency-Keys of the writes sent.
	Keys []string
	// TransportErrors keeps the first few, for the failure message.
	TransportErrors []string
}

// non2xx counts replies outside 2xx, transport errors included.
func (t tally) non2xx() int {
	n := t.Transport
	for status, c := range t.Status {
		if status < 200 || status > 299 {
			n += c
		}
	}
	return n
}

// count5xx counts 5xx replies and transport errors.
func (t tally) count5xx() int {
	n := t.Transport
	for status, c := range t.Status {
		if status >= 500 {
			n += c
		}
	}
	return n
}

func (t tally) String() string {
	var statuses []string
	for _, s := range slices.Sorted(maps.Keys(t.Status)) {
		statuses = append(statuses, fmt.Sprintf("%d×%d", s, t.Status[s]))
	}
	out := fmt.Sprintf("%d requests (%d writes): %s; %d transport errors", t.Requests, t.Writes, strings.Join(statuses, " "), t.Transport)
	if len(t.TransportErrors) > 0 {
		out += " (" + strings.Join(t.TransportErrors, "; ") + ")"
	}
	return out
}

// load is a running loadConfig; its owner calls stop.
type load struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	tally  tally
}

// startLoad starts cfg against the ingress as alice. Reads alternate
// between the product list and a product created here (cached at the
// edge), so that they reach both the edge and the products instances.
func startLoad(t *testing.T, cfg loadConfig) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	l := &load{cancel: cancel, done: make(chan struct{}), tally: tally{Status: map[int]int{}}}
	token := sys.alice.Token
	seed, err := send(ctx, request{method: http.MethodPost, path: "/api/products/products", token: token, body: productBody("seed")})
	if err != nil || seed.status != http.StatusCreated {
		cancel()
		t.Fatalf("seed product: %v %s", err, seed)
	}
	var p struct{ ID int64 }
	if err := json.Unmarshal(seed.body, &p); err != nil {
		cancel()
		t.Fatal(err)
	}
	item := fmt.Sprintf("/api/products/products/%d", p.ID)
	keyPrefix := "faults-" + randomHex(4) + "-"
	// A case that fails half way still ends its load.
	t.Cleanup(func() { l.stop() })
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		tick := time.NewTicker(time.Second / time.Duration(cfg.Rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			r := request{method: http.MethodGet, path: "/api/products/products?limit=5", token: token}
			switch {
			case cfg.WriteEvery > 0 && i%cfg.WriteEvery == 0:
				key := keyPrefix + strconv.Itoa(i)
				r = request{method: http.MethodPost, path: "/api/products/products", token: token, body: productBody(key), idempotencyKey: key}
			case i%2 == 1:
				r.path = item
			}
			// In-flight requests finish even after stop: a write's
			// outcome is counted, never abandoned.
			wg.Go(func() { l.record(r, cfg.Observe) })
		}
	}()
	return l
}

func (l *load) record(r request, observe func(request, reply, time.Time)) {
	sent := time.Now()
	got, err := send(context.Background(), r)
	if err == nil && observe != nil {
		observe(r, got, sent)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tally.Requests++
	if r.method == http.MethodPost {
		l.tally.Writes++
		l.tally.Keys = append(l.tally.Keys, r.idempotencyKey)
	}
	if r.method == http.MethodPost && (err != nil || got.status/100 != 2) {
		l.tally.FailedWrites++
	}
	if err != nil {
		l.tally.Transport++
		if len(l.tally.TransportErrors) < 3 {
			l.tally.TransportErrors = append(l.tally.TransportErrors, err.Error())
		}
		return
	}
	l.tally.Status[got.status]++
	if r.method == http.MethodPost && got.status == http.StatusCreated {
		var p struct{ ID int64 }
		if json.Unmarshal(got.body, &p) == nil {
			l.tally.Created = append(l.tally.Created, p.ID)
		}
	}
}

// stop ends the load, waits for the requests in flight and returns the
// tally.
func (l *load) stop() tally {
	l.cancel()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tally
}

// snapshot is the tally so far.
func (l *load) snapshot() tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.tally
	t.Status = maps.Clone(t.Status)
	return t
}

// productBody is a product whose name begins with name (a word).
func productBody(name string) string {
	return fmt.Sprintf(`{"name": %q, "description": "made by e2e/faults", "price": "9.99", "stock_quantity": 3}`, name+" "+randomHex(3))
}

// waitRequests waits until the load has sent n requests.
func waitRequests(t *testing.T, l *load, n int) {
	t.Helper()
	localenvtest.WaitUntil(t, time.Duration(n)*time.Second, fmt.Sprintf("%d requests sent", n), func() bool {
		return l.snapshot().Requests >= n
	})
}

// keyCounts counts the stored products by the Idempotency-Key their
// name begins with, for each of keys: a key with two products was
// written twice. kept is how many of keys the service kept a response
// for (each write answered 201 must have one: the key reached it).
func keyCounts(t *testing.T, keys []string) (counts map[string]int, kept int) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), sys.servers.DatabaseURL("products"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	rows, err := conn.Query(t.Context(),
		`SELECT split_part(name, ' ', 1), count(*) FROM products
		  WHERE split_part(name, ' ', 1) = ANY($1) GROUP BY 1`, keys)
	if err != nil {
		t.Fatal(err)
	}
	type keyCount struct {
		Key      string
		Products int
	}
	counted, err := pgx.CollectRows(rows, pgx.RowToStructByPos[keyCount])
	if err != nil {
		t.Fatal(err)
	}
	counts = map[string]int{}
	for _, c := range counted {
		counts[c.Key] = c.Products
	}
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM idempotency_keys WHERE key = ANY($1)`, keys).Scan(&kept); err != nil {
		t.Fatal(err)
	}
	return counts, kept
}
