package usersapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/golang-jwt/jwt/v5"
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
	"github.com/portico-mesh/portico/services/platform/telemetry"
	"github.com/portico-mesh/portico/services/platform/web"
	"github.com/portico-mesh/portico/services/users"
	"github.com/portico-mesh/portico/services/users/token"
	"github.com/portico-mesh/portico/services/users/usersapi"
)

func TestMain(m *testing.M) {
	code := localenvtest.Run(m, localenvtest.Postgres, localenvtest.RabbitMQ)
	// The contract must be exercised in full, which only a full run does.
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && !testing.Short() {
		if missing := exercised.missing(); len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: OpenAPI operations no test exercised: %v\n", missing)
			code = 1
		}
	}
	os.Exit(code)
}

// exercised records the OpenAPI operations the tests' requests hit, across
// all tests of the package.
var exercised = newCoverage()

type coverage struct {
	mu  sync.Mutex
	hit map[string]bool
}

func newCoverage() *coverage { return &coverage{hit: map[string]bool{}} }

func (c *coverage) record(operationID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hit[operationID] = true
}

func (c *coverage) missing() []string {
	doc, err := usersapi.OpenAPIDocument()
	if err != nil {
		return []string{err.Error()}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if !c.hit[op.OperationID] {
				out = append(out, op.OperationID)
			}
		}
	}
	slices.Sort(out)
	return out
}

// testEnv is what instances of the service share: a database, a key directory
// and an exchange (tapped, so tests see every event published).
type testEnv struct {
	dbURL    string
	amqpURL  string
	keysDir  string
	exchange string
	events   *eventTap
	logs     *localenvtest.LogBuffer
	// secrets must appear in no log line and no event.
	mu      sync.Mutex
	secrets []string
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	e := &testEnv{
		dbURL:    pgtest.NewDatabase(t, migrations.Users()),
		amqpURL:  localenvtest.AMQPURL(t),
		keysDir:  t.TempDir(),
		exchange: "test.users." + uuid.NewString(),
		logs:     &localenvtest.LogBuffer{},
	}
	e.events = tapEvents(t, e.amqpURL, e.exchange)
	t.Cleanup(func() {
		logs := e.logs.String()
		if t.Failed() {
			t.Logf("service logs:\n%s", logs)
		}
		for _, s := range e.allSecrets() {
			if strings.Contains(logs, s) {
				t.Errorf("a secret (%q) appears in the logs", s)
			}
		}
		if strings.Contains(logs, "$argon2id$") {
			t.Error("a password hash appears in the logs")
		}
	})
	return e
}

// secret registers a password that must never be logged or published.
func (e *testEnv) secret(s string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.secrets = append(e.secrets, s)
	return s
}

func (e *testEnv) allSecrets() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.secrets)
}

// config is what the command reads from its environment: the runtime's
// and the service's own configuration.
type config struct {
	service.BaseConfig
	users.Config
}

// start opens a runtime and builds the service on it, as the command does.
// On error nothing is left open.
func start(ctx context.Context, cfg config, log *slog.Logger) (*service.Runtime, *web.Server, error) {
	rt, err := service.Open(ctx, cfg.BaseConfig, users.Name, "test", migrations.Users(), log)
	if err != nil {
		return nil, nil, err
	}
	srv, err := users.Build(ctx, users.Deps{Pool: rt.Pool, Web: rt.WebConfig(nil), Config: cfg.Config})
	if err != nil {
		return nil, nil, errors.Join(err, rt.Close(context.WithoutCancel(ctx)))
	}
	return rt, srv, nil
}

// config is the configuration of an instance on e.
func (e *testEnv) config(mutate ...func(*config)) config {
	cfg := config{
		BaseConfig: service.BaseConfig{
			HTTPAddr:        "127.0.0.1:0",
			DatabaseURL:     e.dbURL,
			AMQPURL:         e.amqpURL,
			AMQPExchange:    e.exchange,
			LogLevel:        "debug",
			ShutdownTimeout: 5 * time.Second,
		},
		Config: users.Config{
			JWTIssuer:              "portico-users-test",
			JWTAudience:            "portico-test",
			JWTTTL:                 10 * time.Minute,
			JWTKeysDir:             e.keysDir,
			BootstrapAdminUsername: "admin",
		},
	}
	for _, m := range mutate {
		m(&cfg)
	}
	return cfg
}

func (e *testEnv) logger() *slog.Logger {
	return telemetry.NewLogger(e.logs, slog.LevelDebug, users.Name)
}

// testService is one running instance, served over real HTTP.
type testService struct {
	env     *testEnv
	cfg     config
	baseURL string
	srv     *web.Server
	client  *http.Client
	keyfunc keyfunc.Keyfunc
	stop    func()
}

// start runs an instance until the test ends (or stop is called).
func (e *testEnv) start(t *testing.T, mutate ...func(*config)) *testService {
	t.Helper()
	cfg := e.config(mutate...)
	ctx, cancel := context.WithCancel(context.Background())
	rt, srv, err := start(ctx, cfg, e.logger())
	if err != nil {
		cancel()
		t.Fatalf("start: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.Serve(ctx, srv, ln) }()

	s := &testService{env: e, cfg: cfg, baseURL: "http://" + ln.Addr().String(), srv: srv}
	s.client = &http.Client{Transport: newContractTransport(t, s.baseURL), Timeout: 30 * time.Second}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("service did not stop")
			}
		})
	}
	t.Cleanup(s.stop)
	return s
}

// response is a complete HTTP response.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

func (r response) problem(t *testing.T) problem.Problem {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != problem.ContentType {
		t.Errorf("error Content-Type %q, want %s", ct, problem.ContentType)
	}
	var p problem.Problem
	r.decode(t, &p)
	return p
}

// fields lists the members a problem names, in order.
func fields(p problem.Problem) []string {
	var out []string
	for _, e := range p.Errors {
		out = append(out, e.Field)
	}
	return out
}

type requestOption func(*http.Request)

// as sends the identity headers the ingress sets for a verified caller.
func as(id identity.Identity) requestOption {
	return func(r *http.Request) { identity.Set(r.Header.Set, id) }
}

func header(k, v string) requestOption {
	return func(r *http.Request) { r.Header.Set(k, v) }
}

// do sends a request. body is marshaled to JSON unless it is a string,
// which is sent as is; both as application/json unless an option says
// otherwise.
func (s *testService) do(t *testing.T, method, path string, body any, opts ...requestOption) response {
	t.Helper()
	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		reader = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		reader = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.baseURL+path, reader)
	if err != nil {
		t.Fatal(err)
	}
	if reader != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// expect fails the test unless r has status want.
func expect(t *testing.T, r response, want int) response {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status %d, want %d; body %s", r.Status, want, r.Body)
	}
	return r
}

// userJSON is the public user shape, decoded strictly: an unexpected member
// (a password, a hash) fails the decode.
type userJSON struct {
	ID        int64     `json:"id"`
	Username  string    `json:"username"`
	Email     string    `json:"email"`
	IsActive  bool      `json:"is_active"`
	Roles     []string  `json:"roles"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func decodeUser(t *testing.T, r response) userJSON {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	var u userJSON
	if err := dec.Decode(&u); err != nil {
		t.Fatalf("user body %s: %v", r.Body, err)
	}
	return u
}

// register creates an account and returns it.
func (s *testService) register(t *testing.T, username, email, password string) userJSON {
	t.Helper()
	s.env.secret(password)
	r := expect(t, s.do(t, http.MethodPost, "/users", map[string]string{
		"username": username, "email": email, "password": password,
	}), http.StatusCreated)
	return decodeUser(t, r)
}

// login exchanges credentials for a token and returns the identity the
// ingress would derive from it after verifying it against the JWKS.
func (s *testService) login(t *testing.T, email, password string) identity.Identity {
	t.Helper()
	r := expect(t, s.do(t, http.MethodPost, "/login", map[string]string{"email": email, "password": password}), http.StatusOK)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	r.decode(t, &tok)
	claims := s.verify(t, tok.AccessToken)
	return identity.Identity{UserID: claims.Subject, Username: claims.Username, Email: claims.Email, Roles: claims.Roles}
}

// verify checks a token as the ingress does, with the keys the service
// publishes at /.well-known/jwks.json.
func (s *testService) verify(t *testing.T, tok string) *token.Claims {
	t.Helper()
	if s.keyfunc == nil {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		kf, err := keyfunc.NewDefaultCtx(ctx, []string{s.baseURL + "/.well-known/jwks.json"})
		if err != nil {
			t.Fatalf("keyfunc: %v", err)
		}
		s.keyfunc = kf
	}
	claims := &token.Claims{}
	_, err := jwt.ParseWithClaims(tok, claims, s.keyfunc.Keyfunc,
		jwt.WithValidMethods([]string{"EdDSA"}),
		jwt.WithIssuer(s.cfg.JWTIssuer),
		jwt.WithAudience(s.cfg.JWTAudience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	if err != nil {
		t.Fatalf("verify token: %v", err)
	}
	return claims
}

// identityOf is the identity of u as the ingress would pass it on.
func identityOf(u userJSON) identity.Identity {
	return identity.Identity{UserID: strconv.FormatInt(u.ID, 10), Username: u.Username, Email: u.Email, Roles: u.Roles}
}

// contractTransport checks every response against the OpenAPI document:
// its status must be documented for the operation (not merely covered by
// default) and its headers and body must match.
type contractTransport struct {
	t      *testing.T
	router routers.Router
	next   http.RoundTripper
}

func newContractTransport(t *testing.T, baseURL string) *contractTransport {
	t.Helper()
	doc, err := usersapi.OpenAPIDocument()
	if err != nil {
		t.Fatal(err)
	}
	doc.Servers = openapi3.Servers{{URL: baseURL}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contractTransport{t: t, router: router, next: http.DefaultTransport}
}

func (c *contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))

	where := fmt.Sprintf("%s %s -> %d", req.Method, req.URL.Path, resp.StatusCode)
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.t.Errorf("contract: %s: not in the OpenAPI document: %v", where, err)
		return resp, nil
	}
	exercised.record(route.Operation.OperationID)
	if route.Operation.Responses.Status(resp.StatusCode) == nil {
		c.t.Errorf("contract: %s: status not documented for %s", where, route.Operation.OperationID)
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	input.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(req.Context(), input); err != nil {
		c.t.Errorf("contract: %s: %v\nbody: %s", where, err, body)
	}
	return resp, nil
}

// eventTap receives every event published on an exchange.
type eventTap struct {
	deliveries <-chan amqp.Delivery
}

type receivedEvent struct {
	events.Envelope
	Raw      []byte
	RouteKey string
}

func tapEvents(t *testing.T, amqpURL, exchange string) *eventTap {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.DeclareExchange(ch, exchange); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.ExchangeDelete(exchange, false, false) })
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
	return &eventTap{deliveries: deliveries}
}

// next returns the next event, failing the test if none comes.
func (e *eventTap) next(t *testing.T) receivedEvent {
	t.Helper()
	select {
	case d, ok := <-e.deliveries:
		if !ok {
			t.Fatal("event consumer closed")
		}
		var ev receivedEvent
		if err := json.Unmarshal(d.Body, &ev.Envelope); err != nil {
			t.Fatalf("event %s: %v", d.Body, err)
		}
		ev.Raw, ev.RouteKey = d.Body, d.RoutingKey
		return ev
	case <-time.After(15 * time.Second):
		t.Fatal("no event published")
		return receivedEvent{}
	}
}

// none fails the test if an event arrives within wait.
func (e *eventTap) none(t *testing.T, wait time.Duration) {
	t.Helper()
	select {
	case d := <-e.deliveries:
		t.Fatalf("unexpected event: %s", d.Body)
	case <-time.After(wait):
	}
}
