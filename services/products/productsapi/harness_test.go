package productsapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/broker"
	"github.com/portico-mesh/portico/services/platform/events"
	"github.com/portico-mesh/portico/services/platform/identity"
	"github.com/portico-mesh/portico/services/platform/pgstore/pgtest"
	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/platform/service"
	"github.com/portico-mesh/portico/services/products"
	"github.com/portico-mesh/portico/services/products/productsbus"
)

func TestMain(m *testing.M) {
	code := localenvtest.Run(m, localenvtest.Postgres, localenvtest.RabbitMQ)
	if code == 0 {
		code = contract.checkCoverage()
	}
	os.Exit(code)
}

// testCacheMaxAge differs from the default so tests see the configured value.
const testCacheMaxAge = 42 * time.Second

const (
	readCacheControl = "public, max-age=42"
	noStore          = "no-store"
)

var (
	alice = identity.Identity{UserID: "u-alice", Username: "alice", Email: "alice@example.com", Roles: []string{"user"}}
	admin = identity.Identity{UserID: "u-root", Username: "root", Email: "root@example.com", Roles: []string{"user", "admin"}}
)

// testService is the products service running in-process on a loopback
// port, with its own database and its own events exchange.
type testService struct {
	baseURL string
	client  *http.Client
	events  *eventStream
}

// startService runs the service as its command does (products.Build on a
// service runtime), on a fresh database.
// The relay publishes to an exchange of the test's own, and events lists
// what it published.
func startService(t *testing.T) *testService {
	t.Helper()
	dbURL := pgtest.NewDatabase(t, migrations.Products())
	amqpURL := localenvtest.AMQPURL(t)
	exchange := "portico.test.products." + uuid.NewString()
	stream := subscribe(t, amqpURL, exchange)

	ctx, cancel := context.WithCancel(context.Background())
	cfg := service.BaseConfig{
		DatabaseURL:     dbURL,
		AMQPURL:         amqpURL,
		AMQPExchange:    exchange,
		LogLevel:        "warn",
		ShutdownTimeout: 10 * time.Second,
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rt, err := service.Open(ctx, cfg, products.Name, "test", migrations.Products(), log)
	if err != nil {
		cancel()
		t.Fatalf("open service: %v", err)
	}
	srv, err := products.Build(ctx, products.Deps{
		Pool:   rt.Pool,
		Web:    rt.WebConfig(nil),
		Config: products.Config{CacheMaxAge: testCacheMaxAge},
	})
	if err != nil {
		cancel()
		_ = rt.Close(context.Background())
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.Serve(ctx, srv, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("service shutdown: %v", err)
		}
	})
	return &testService{
		baseURL: "http://" + ln.Addr().String(),
		client: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &contractTransport{t: t, base: http.DefaultTransport},
		},
		events: stream,
	}
}

// requestOption adjusts a request before it is sent.
type requestOption func(*http.Request)

// as sends the identity headers the ingress would set for caller.
func as(caller identity.Identity) requestOption {
	return func(r *http.Request) { identity.Set(r.Header.Set, caller) }
}

func header(key, value string) requestOption {
	return func(r *http.Request) { r.Header.Set(key, value) }
}

func withoutContentType() requestOption {
	return func(r *http.Request) { r.Header.Del("Content-Type") }
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; a non-empty body is sent as application/json unless
// an option says otherwise. It never fails the test by itself, so that
// goroutines may use it.
func (s *testService) do(method, path, body string, opts ...requestOption) (response, error) {
	var reader io.Reader
	if body != "" {
		reader = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.baseURL+path, reader)
	if err != nil {
		return response{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// must is do for the test goroutine: it fails the test on transport errors
// and on a status other than want.
func (s *testService) must(t *testing.T, want int, method, path, body string, opts ...requestOption) response {
	t.Helper()
	r, err := s.do(method, path, body, opts...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.status != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.status, want, r.body)
	}
	return r
}

// product is a product response as a test reads it. Price stays the JSON
// text the service sent.
type product struct {
	ID            int64           `json:"id"`
	Name          string          `json:"name"`
	Description   string          `json:"description"`
	Price         json.RawMessage `json:"price"`
	StockQuantity int             `json:"stock_quantity"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
}

type page struct {
	Items      []product `json:"items"`
	NextCursor string    `json:"next_cursor"`
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, r.body, err)
	}
	return v
}

// decodeProblem checks that r is a problem of type typ and returns it.
func decodeProblem(t *testing.T, r response, typ string) problem.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, problem.ContentType) {
		t.Fatalf("content type %q, want %s; body %s", ct, problem.ContentType, r.body)
	}
	p := decode[problem.Problem](t, r)
	if p.Type != typ || p.Status != r.status {
		t.Fatalf("problem %s (status %d), want %s (status %d): %s", p.Type, p.Status, typ, r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != noStore {
		t.Errorf("problem Cache-Control = %q, want %q", cc, noStore)
	}
	return p
}

// problemFields lists the members a validation problem names.
func problemFields(p problem.Problem) []string {
	fields := []string{}
	for _, e := range p.Errors {
		fields = append(fields, e.Field)
		if e.Pointer != "#/"+e.Field || e.Detail == "" {
			fields = append(fields, fmt.Sprintf("(bad entry %+v)", e))
		}
	}
	return fields
}

// createProduct creates a product as alice from a JSON body.
func (s *testService) createProduct(t *testing.T, body string) product {
	t.Helper()
	return decode[product](t, s.must(t, http.StatusCreated, http.MethodPost, "/products", body, as(alice)))
}

// eventStream receives every event published to one exchange.
type eventStream struct {
	deliveries <-chan amqp.Delivery
}

// subscribe binds a private queue to exchange (declaring it, as consumers
// do) before the service publishes anything.
func subscribe(t *testing.T, url, exchange string) *eventStream {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("amqp dial: %v", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.DeclareExchange(ch, exchange); err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "#", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ch.ExchangeDelete(exchange, false, false)
		_ = conn.Close()
	})
	return &eventStream{deliveries: deliveries}
}

// next returns the next event published, in publication order.
func (s *eventStream) next(t *testing.T) events.Envelope {
	t.Helper()
	select {
	case d, ok := <-s.deliveries:
		if !ok {
			t.Fatal("event stream closed")
		}
		var ev events.Envelope
		if err := json.Unmarshal(d.Body, &ev); err != nil {
			t.Fatalf("event %s: %v", d.Body, err)
		}
		if d.RoutingKey != ev.Type {
			t.Errorf("event %s routed as %q", ev.Type, d.RoutingKey)
		}
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no event published within 20s")
		return events.Envelope{}
	}
}

// expect returns the next event, which must have type typ about product id.
func (s *eventStream) expect(t *testing.T, typ string, id int64) events.Envelope {
	t.Helper()
	ev := s.next(t)
	if ev.Type != typ || ev.Subject != fmt.Sprintf("products/%d", id) || ev.Source != productsbus.EventSource {
		t.Fatalf("event %s %s from %s, want %s products/%d from %s; data %s",
			ev.Type, ev.Subject, ev.Source, typ, id, productsbus.EventSource, ev.Data)
	}
	if ev.ID == "" || ev.SpecVersion != events.SpecVersion || ev.Time.IsZero() {
		t.Errorf("event envelope incomplete: %+v", ev)
	}
	return ev
}

// productData decodes product.created/updated data strictly.
func productData(t *testing.T, ev events.Envelope) productsbus.ProductEventData {
	t.Helper()
	var d productsbus.ProductEventData
	dec := json.NewDecoder(bytes.NewReader(ev.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("event data %s: %v", ev.Data, err)
	}
	return d
}
