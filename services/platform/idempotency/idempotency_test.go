package idempotency_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/idempotency"
	"github.com/portico-mesh/portico/services/platform/pgstore"
	"github.com/portico-mesh/portico/services/platform/pgstore/pgtest"
	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/platform/web"
)

func TestMain(m *testing.M) { os.Exit(localenvtest.Run(m, localenvtest.Postgres)) }

// notes is the writing service of these tests: POST /notes stores a note
// with its receipt in one transaction, as a product create does.
type notes struct {
	pool *pgxpool.Pool
	keys *idempotency.Store
	// beforeKeep and afterKeep, when set, run inside the write's
	// transaction just before and just after its receipt is kept.
	beforeKeep, afterKeep func(ctx context.Context) error
}

type note struct {
	ID   int64  `json:"id"`
	Text string `json:"text"`
}

// newNotes starts the service on a fresh database carrying the
// idempotency line and a notes table.
func newNotes(t *testing.T, cfg idempotency.Config) (*notes, *server) {
	t.Helper()
	ctx := t.Context()
	pool := pgtest.NewPool(t, nil)
	if err := pgstore.Migrate(ctx, pool, slog.New(slog.DiscardHandler), idempotency.Migrations()); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, text text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	cfg.Pool = pool
	n := &notes{pool: pool, keys: idempotency.NewStore(cfg)}
	srv := web.New(web.Config{Service: "notes"})
	srv.Mount(web.Route{Method: http.MethodPost, Path: "/notes", Handler: n.create})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx, ln, 5*time.Second) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return n, &server{URL: "http://" + ln.Addr().String(), client: &http.Client{Transport: &http.Transport{Proxy: nil}}}
}

// server is where the notes service listens.
type server struct {
	URL    string
	client *http.Client
}

func (s *server) Client() *http.Client { return s.client }

func (n *notes) create(c *fiber.Ctx) error {
	respond := func(v note) (idempotency.Response, error) {
		body, err := json.Marshal(v)
		return idempotency.Response{
			Status: http.StatusCreated,
			Header: map[string]string{fiber.HeaderLocation: fmt.Sprintf("notes/%d", v.ID), fiber.HeaderContentType: fiber.MIMEApplicationJSON},
			Body:   body,
		}, err
	}
	return idempotency.Serve(c, n.keys, c.Get("X-Caller"), respond, func(receipt idempotency.Record[note]) (note, error) {
		v := note{Text: string(c.Body())}
		err := pgx.BeginFunc(c.UserContext(), n.pool, func(tx pgx.Tx) error {
			if err := tx.QueryRow(c.UserContext(), `INSERT INTO notes (text) VALUES ($1) RETURNING id`, v.Text).Scan(&v.ID); err != nil {
				return err
			}
			if n.beforeKeep != nil {
				if err := n.beforeKeep(c.UserContext()); err != nil {
					return err
				}
			}
			if err := receipt.Keep(c.UserContext(), tx, v); err != nil {
				return err
			}
			if n.afterKeep != nil {
				return n.afterKeep(c.UserContext())
			}
			return nil
		})
		return v, err
	})
}

func (n *notes) count(t *testing.T) int {
	t.Helper()
	var c int
	if err := n.pool.QueryRow(t.Context(), `SELECT count(*) FROM notes`).Scan(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

type answer struct {
	status int
	header http.Header
	body   string
}

func post(t *testing.T, ts *server, caller, key, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.URL+"/notes", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Caller", caller)
	if key != "" {
		req.Header.Set(idempotency.HeaderKey, key)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func requireProblem(t *testing.T, got answer, status int, typ string) {
	t.Helper()
	var p problem.Problem
	if got.status != status || got.header.Get("Content-Type") != problem.ContentType || json.Unmarshal([]byte(got.body), &p) != nil || p.Type != typ {
		t.Fatalf("got %d %s %s, want %d problem+json of type %s", got.status, got.header.Get("Content-Type"), got.body, status, typ)
	}
}

// A retry with the key is answered the first response, marked replayed,
// and writes nothing; without a key every request writes.
func TestReplayReturnsTheSameResponse(t *testing.T) {
	n, ts := newNotes(t, idempotency.Config{})
	first := post(t, ts, "alice", "k-1", "hello")
	if first.status != http.StatusCreated || first.header.Get(idempotency.HeaderReplayed) != "" {
		t.Fatalf("first: %+v", first)
	}
	again := post(t, ts, "alice", "k-1", "hello")
	if again.status != first.status || again.body != first.body ||
		again.header.Get("Location") != first.header.Get("Location") || again.header.Get("Content-Type") != first.header.Get("Content-Type") {
		t.Errorf("replay %+v differs from the first response %+v", again, first)
	}
	if got := again.header.Get(idempotency.HeaderReplayed); got != "true" {
		t.Errorf("replay has %s %q, want true", idempotency.HeaderReplayed, got)
	}
	// Envoy sends header names in lower case.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.URL+"/notes", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Caller", "alice")
	req.Header["idempotency-key"] = []string{"k-1"}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get(idempotency.HeaderReplayed) != "true" {
		t.Errorf("the key in a lower-case header: %d, replayed %q; want the replayed 201", resp.StatusCode, resp.Header.Get(idempotency.HeaderReplayed))
	}
	if c := n.count(t); c != 1 {
		t.Errorf("%d notes written, want 1", c)
	}
	// Keys are per caller: bob's k-1 is his own.
	if bob := post(t, ts, "bob", "k-1", "hello"); bob.status != http.StatusCreated || bob.body == first.body {
		t.Errorf("bob's request with alice's key: %+v", bob)
	}
	post(t, ts, "alice", "", "hello")
	post(t, ts, "alice", "", "hello")
	if c := n.count(t); c != 4 {
		t.Errorf("%d notes written, want 4 (two keyed, two without a key)", c)
	}
}

// The same key with another request (body) is 422, and writes nothing.
func TestKeyReusedForAnotherRequest(t *testing.T) {
	n, ts := newNotes(t, idempotency.Config{})
	post(t, ts, "alice", "k-1", "hello")
	requireProblem(t, post(t, ts, "alice", "k-1", "goodbye"), http.StatusUnprocessableEntity, problem.TypeValidation)
	if c := n.count(t); c != 1 {
		t.Errorf("%d notes written, want 1", c)
	}
}

// A malformed key is 400 before anything is written.
func TestMalformedKeys(t *testing.T) {
	n, ts := newNotes(t, idempotency.Config{})
	for name, key := range map[string]string{
		"too long":  strings.Repeat("k", idempotency.MaxKeyLength+1),
		"a space":   "two words",
		"a tab":     "tab\there",
		"not ascii": "clé",
	} {
		t.Run(name, func(t *testing.T) {
			requireProblem(t, post(t, ts, "alice", key, "hello"), http.StatusBadRequest, problem.TypeMalformed)
		})
	}
	for name, values := range map[string][]string{"empty": {""}, "repeated": {"a", "b"}} {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, ts.URL+"/notes", strings.NewReader("hello"))
			if err != nil {
				t.Fatal(err)
			}
			req.Header[idempotency.HeaderKey] = values
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			requireProblem(t, answer{status: resp.StatusCode, header: resp.Header, body: string(b)}, http.StatusBadRequest, problem.TypeMalformed)
		})
	}
	if c := n.count(t); c != 0 {
		t.Errorf("%d notes written, want 0", c)
	}
	for _, key := range []string{"k", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, strings.Repeat("~", idempotency.MaxKeyLength)} {
		if got := post(t, ts, "alice", key, "hello"); got.status != http.StatusCreated {
			t.Errorf("key %q: %+v, want 201", key, got)
		}
	}
}

// Concurrent requests with one key write once: the ones that lose the
// race wait on the key's row until the first commits, roll back and are
// answered its response.
func TestConcurrentDuplicatesWriteOnce(t *testing.T) {
	n, ts := newNotes(t, idempotency.Config{})
	// Fewer than the pool's connections (4 at least), as each request
	// holds one in its transaction while it waits for the others.
	const requests = 3
	// Every request inserts its note before any keeps its receipt, so all
	// of them have passed the look-up and race on the key's row.
	var inside atomic.Int32
	all := make(chan struct{})
	n.beforeKeep = func(ctx context.Context) error {
		if inside.Add(1) == requests {
			close(all)
		}
		select {
		case <-all:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Minute):
			return errors.New("the other requests never arrived")
		}
	}
	answers := make([]answer, requests)
	var wg sync.WaitGroup
	for i := range requests {
		wg.Go(func() { answers[i] = post(t, ts, "alice", "k-race", "hello") })
	}
	wg.Wait()
	replayed := 0
	for i, a := range answers {
		if a.status != http.StatusCreated || a.body != answers[0].body {
			t.Errorf("request %d: %+v, want the one 201 %s", i, a, answers[0].body)
		}
		if a.header.Get(idempotency.HeaderReplayed) == "true" {
			replayed++
		}
	}
	if replayed != requests-1 {
		t.Errorf("%d replayed answers, want %d", replayed, requests-1)
	}
	if c := n.count(t); c != 1 {
		t.Errorf("%d notes written, want 1", c)
	}
}

// A request whose key is held by one still running (past the wait's
// bound) is 409 with Retry-After, and writes nothing.
func TestKeyInFlight(t *testing.T) {
	n, ts := newNotes(t, idempotency.Config{})
	// The first request holds its transaction, with its key row in it,
	// until the second has its answer.
	firstKept, secondDone := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	n.afterKeep = func(context.Context) error {
		if calls.Add(1) == 1 {
			close(firstKept)
			<-secondDone
		}
		return nil
	}
	var first answer
	var wg sync.WaitGroup
	wg.Go(func() { first = post(t, ts, "alice", "k-slow", "hello") })
	<-firstKept
	second := post(t, ts, "alice", "k-slow", "hello")
	close(secondDone)
	wg.Wait()
	requireProblem(t, second, http.StatusConflict, problem.TypeConflict)
	if second.header.Get("Retry-After") == "" {
		t.Errorf("the 409 has no Retry-After: %+v", second)
	}
	if first.status != http.StatusCreated {
		t.Errorf("first: %+v", first)
	}
	if c := n.count(t); c != 1 {
		t.Errorf("%d notes written, want 1", c)
	}
	if again := post(t, ts, "alice", "k-slow", "hello"); again.status != http.StatusCreated || again.body != first.body {
		t.Errorf("after the first finished: %+v, want its 201 replayed", again)
	}
}

// Expired keys are no longer answered, a new request takes the key over,
// and Sweep deletes what expired.
func TestExpiredKeysSwept(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	n, ts := newNotes(t, idempotency.Config{TTL: time.Hour, Now: clock})

	first := post(t, ts, "alice", "k-old", "hello")
	post(t, ts, "alice", "k-other", "hello")
	if swept, err := n.keys.Sweep(t.Context()); err != nil || swept != 0 {
		t.Fatalf("sweep before expiry: %d, %v", swept, err)
	}
	advance(2 * time.Hour)
	again := post(t, ts, "alice", "k-old", "hello")
	if again.status != http.StatusCreated || again.header.Get(idempotency.HeaderReplayed) != "" || again.body == first.body {
		t.Errorf("after expiry: %+v, want a new 201", again)
	}
	if c := n.count(t); c != 3 {
		t.Errorf("%d notes, want 3", c)
	}
	// k-old was taken over (fresh), k-other expired.
	swept, err := n.keys.Sweep(t.Context())
	if err != nil || swept != 1 {
		t.Fatalf("sweep: %d, %v; want 1", swept, err)
	}
	rows, err := n.pool.Query(t.Context(), `SELECT key FROM idempotency_keys ORDER BY key`)
	if err != nil {
		t.Fatal(err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(left) != 1 || left[0] != "k-old" {
		t.Errorf("keys left %v (%v), want [k-old]", left, err)
	}
}

// A write that rolls back keeps no key: its retry writes.
func TestRolledBackWriteKeepsNoKey(t *testing.T) {
	n, ts := newNotes(t, idempotency.Config{})
	fail := errors.New("the write fails after its row")
	n.beforeKeep = func(context.Context) error { return fail }
	if got := post(t, ts, "alice", "k-1", "hello"); got.status != http.StatusInternalServerError {
		t.Fatalf("failing write: %+v", got)
	}
	n.beforeKeep = nil
	if got := post(t, ts, "alice", "k-1", "hello"); got.status != http.StatusCreated || got.header.Get(idempotency.HeaderReplayed) != "" {
		t.Errorf("retry: %+v, want a first 201", got)
	}
	if c := n.count(t); c != 1 {
		t.Errorf("%d notes, want 1", c)
	}
}
