package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	vegeta "github.com/tsenart/vegeta/v12/lib"
	"sigs.k8s.io/yaml"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/services/platform/contract"
)

// The edge configuration keys in Consul KV (README "Changing the edge
// configuration").
const (
	edgeConfigKey       = "portico/edge/config"
	edgeConfigStatusKey = "portico/edge/config-status"
)

// benchRoutePrefix is the route the benchmark adds for the ingress path
// with JWT but no global rate limit: users, like /api/users/.
const benchRoutePrefix = "/bench/users/"

// generousRequests is the limit the benchmark sets everywhere: the checks
// still run on every request, as in production, but never answer 429.
const generousRequests = 1_000_000_000

// benchDocument is the shipped default with every limit raised and one
// route added, written to KV as an operator would: the defaults keep only
// a (generous) local bucket, every shipped route gets generous global
// limits explicitly, and the added route inherits no global limit. The
// ingress samples samplingPercent of the requests (when a trace backend
// runs; without one the ingress has no tracer).
func benchDocument(samplingPercent float64) ([]byte, error) {
	doc, err := edgeconfig.Parse(edgeconfig.Default())
	if err != nil {
		return nil, err
	}
	local := &edgeconfig.TokenBucket{Requests: generousRequests, Per: edgeconfig.Duration(time.Second), Burst: generousRequests}
	generous := &edgeconfig.Limit{Requests: generousRequests, Per: "minute"}
	doc.Defaults.RateLimit = &edgeconfig.RateLimit{Local: local}
	for i := range doc.Routes {
		doc.Routes[i].RateLimit = &edgeconfig.RateLimit{
			Local:  local,
			Global: &edgeconfig.GlobalLimits{PerClient: generous, PerSubject: generous},
		}
	}
	doc.Tracing.SamplingPercent = samplingPercent
	doc.Routes = append([]edgeconfig.Route{{
		Name: "bench-jwt-only", Prefix: benchRoutePrefix, Service: "users", Rewrite: "/",
	}}, doc.Routes...)
	if err := doc.Validate(); err != nil {
		return nil, err
	}
	return yaml.Marshal(doc)
}

// edgeConfig is the document in KV before the benchmark, to put back.
type edgeConfig struct {
	kv       *api.KV
	previous *api.KVPair // nil: the built-in default was in use
}

// applyBenchConfig writes the benchmark document and waits until the
// control plane accepted it and the rate-limit service counts with the
// raised limits (they come back in X-RateLimit-Limit).
func applyBenchConfig(ctx context.Context, f *fixture, samplingPercent float64) (*edgeConfig, error) {
	client, err := api.NewClient(&api.Config{Address: consulAddr})
	if err != nil {
		return nil, err
	}
	kv := client.KV()
	q := (&api.QueryOptions{}).WithContext(ctx)
	previous, _, err := kv.Get(edgeConfigKey, q)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", edgeConfigKey, err)
	}
	raw, err := benchDocument(samplingPercent)
	if err != nil {
		return nil, err
	}
	if _, err := kv.Put(&api.KVPair{Key: edgeConfigKey, Value: raw}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return nil, err
	}
	ec := &edgeConfig{kv: kv, previous: previous}
	pair, _, err := kv.Get(edgeConfigKey, q)
	if err != nil {
		return ec, fmt.Errorf("read back %s: %w", edgeConfigKey, err)
	}
	if pair == nil {
		return ec, fmt.Errorf("read back %s: gone", edgeConfigKey)
	}
	err = poll(ctx, 30*time.Second, func(ctx context.Context) error {
		st, _, err := kv.Get(edgeConfigStatusKey, q)
		if err != nil {
			return err
		}
		if st == nil {
			return fmt.Errorf("no %s yet", edgeConfigStatusKey)
		}
		var status struct {
			ModifyIndex uint64 `json:"modifyIndex"`
			Accepted    bool   `json:"accepted"`
			Error       string `json:"error"`
		}
		if err := json.Unmarshal(st.Value, &status); err != nil {
			return err
		}
		if status.ModifyIndex != pair.ModifyIndex {
			return fmt.Errorf("status is about revision %d, not %d", status.ModifyIndex, pair.ModifyIndex)
		}
		if !status.Accepted {
			return localenv.StopPolling(fmt.Errorf("the control plane rejected the benchmark configuration: %s", status.Error))
		}
		return nil
	})
	if err != nil {
		return ec, err
	}
	want := strconv.Itoa(generousRequests)
	err = poll(ctx, 30*time.Second, func(ctx context.Context) error {
		for _, path := range []string{benchRoutePrefix + "users/" + f.user.id(), "/api/users/users/" + f.user.id()} {
			r, err := f.call(ctx, http.MethodGet, ingressURL+path, f.user.Token, nil)
			if err != nil {
				return err
			}
			if r.status != http.StatusOK {
				return fmt.Errorf("GET %s: %d", path, r.status)
			}
			if path != benchRoutePrefix+"users/"+f.user.id() && !strings.Contains(r.header.Get("X-Ratelimit-Limit"), want) {
				return fmt.Errorf("GET %s: X-RateLimit-Limit %q", path, r.header.Get("X-Ratelimit-Limit"))
			}
		}
		return nil
	})
	return ec, err
}

// restore puts back the document that was in KV, or the built-in default.
func (ec *edgeConfig) restore() error {
	if ec == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := (&api.WriteOptions{}).WithContext(ctx)
	if ec.previous == nil {
		_, err := ec.kv.Delete(edgeConfigKey, w)
		return err
	}
	_, err := ec.kv.Put(&api.KVPair{Key: edgeConfigKey, Value: ec.previous.Value}, w)
	return err
}

// account is a user the benchmark signs in as.
type account struct {
	ID       int64
	Username string
	Email    string
	Password string
	Roles    []string
	Token    string
}

func (a account) id() string { return strconv.FormatInt(a.ID, 10) }

// fixture is what the paths need: accounts, a product, a run id.
type fixture struct {
	http      *http.Client
	runID     string
	user      account // registered for this run
	admin     account // the bootstrap admin
	productID int64
	// signedIn is when the tokens were issued: they live 15 minutes
	// (JWT_TTL), longer than a path takes but not than a slow run.
	signedIn time.Time
	// missSeq numbers the cache-busting queries of the MISS path.
	missSeq atomic.Uint64
}

// tokenRefreshAfter is the token age after which freshTokens signs in again.
const tokenRefreshAfter = 5 * time.Minute

// freshTokens signs both accounts in again when their tokens are old.
func (f *fixture) freshTokens(ctx context.Context) error {
	if time.Since(f.signedIn) < tokenRefreshAfter {
		return nil
	}
	var err error
	if f.user.Token, err = f.login(ctx, f.user.Email, f.user.Password); err != nil {
		return err
	}
	if f.admin.Token, err = f.login(ctx, f.admin.Email, f.admin.Password); err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	f.signedIn = time.Now()
	return nil
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// check turns a call's error or unexpected status into an error.
func (r response) check(err error, want int) error {
	if err != nil {
		return err
	}
	if r.status != want {
		return fmt.Errorf("status %d, want %d: %s", r.status, want, r.body)
	}
	return nil
}

func (f *fixture) call(ctx context.Context, method, url, token string, body any) (response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// newFixture registers a user for this run and signs it and the admin in,
// under the limits in force: three requests, well within the defaults
// (login allows 10 a minute per client).
func newFixture(ctx context.Context, adminEmail, adminPassword string) (*fixture, error) {
	raw := make([]byte, 6)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	runID := hex.EncodeToString(raw)
	f := &fixture{http: &http.Client{Timeout: 15 * time.Second}, runID: runID}
	f.user = account{Username: "bench-" + runID, Email: "bench-" + runID + "@example.com", Password: "bench-pw-" + runID}
	r, err := f.call(ctx, http.MethodPost, ingressURL+"/api/users/users", "",
		map[string]string{"username": f.user.Username, "email": f.user.Email, "password": f.user.Password})
	if err := r.check(err, http.StatusCreated); err != nil {
		return nil, fmt.Errorf("register the bench user: %w", err)
	}
	var u struct {
		ID    int64    `json:"id"`
		Roles []string `json:"roles"`
	}
	if err := json.Unmarshal(r.body, &u); err != nil {
		return nil, err
	}
	f.user.ID, f.user.Roles = u.ID, u.Roles
	if f.user.Token, err = f.login(ctx, f.user.Email, f.user.Password); err != nil {
		return nil, err
	}
	f.admin = account{Email: adminEmail, Password: adminPassword}
	if f.admin.Token, err = f.login(ctx, adminEmail, adminPassword); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	f.signedIn = time.Now()
	return f, nil
}

func (f *fixture) login(ctx context.Context, email, password string) (string, error) {
	r, err := f.call(ctx, http.MethodPost, ingressURL+"/api/users/login", "", map[string]string{"email": email, "password": password})
	if err := r.check(err, http.StatusOK); err != nil {
		return "", fmt.Errorf("login %s: %w", email, err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(r.body, &tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("login %s: no access_token in %s", email, r.body)
	}
	return tok.AccessToken, nil
}

// productBody is what the write path posts.
const productBody = `{"name": "Bench lamp", "description": "made by make bench", "price": "9.99", "stock_quantity": 1}`

// createProduct makes the product the cache paths read.
func (f *fixture) createProduct(ctx context.Context) error {
	var body map[string]any
	if err := json.Unmarshal([]byte(productBody), &body); err != nil {
		return err
	}
	r, err := f.call(ctx, http.MethodPost, ingressURL+"/api/products/products", f.admin.Token, body)
	if err := r.check(err, http.StatusCreated); err != nil {
		return fmt.Errorf("create the bench product: %w", err)
	}
	var p struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		return err
	}
	f.productID = p.ID
	return nil
}

// identityHeaders are what the ingress sets from the bench user's token:
// calls that skip the ingress carry them as the sidecars would pass them.
func (f *fixture) identityHeaders() http.Header {
	return http.Header{
		contract.HeaderUserID:   {f.user.id()},
		contract.HeaderUsername: {f.user.Username},
		contract.HeaderEmail:    {f.user.Email},
		contract.HeaderRoles:    {strings.Join(f.user.Roles, ",")},
	}
}

func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

// static targets one request again and again.
func static(t vegeta.Target) func() vegeta.Targeter {
	return func() vegeta.Targeter { return vegeta.NewStaticTargeter(t) }
}

// expect judges by status code and, when xcache is given, by the edge
// cache's X-Cache answer.
func expect(status int, xcache ...string) func(*vegeta.Result) string {
	return func(r *vegeta.Result) string {
		switch {
		case r.Code == 0:
			return "error"
		case int(r.Code) != status:
			return strconv.Itoa(int(r.Code))
		}
		if len(xcache) == 0 {
			return ""
		}
		got := r.Headers.Get("X-Cache")
		for _, want := range xcache {
			if got == want {
				return ""
			}
		}
		return strconv.Itoa(int(r.Code)) + ":x-cache=" + orDash(got)
	}
}

// paths lists what the benchmark measures, in the order printed, with the
// current tokens. Every GET reads the same kind of record (one user, or
// one product) so the paths differ only by the hops in front of the
// service.
func (f *fixture) paths(rates, loginRates []int, floorURL string) []benchPath {
	userPath := "/users/" + f.user.id()
	productPath := "/api/products/products/" + strconv.FormatInt(f.productID, 10)
	withIdentity := f.identityHeaders()
	userToken := bearer(f.user.Token)
	adminWrite := bearer(f.admin.Token)
	adminWrite.Set("Content-Type", "application/json")
	loginBody, _ := json.Marshal(map[string]string{"email": f.user.Email, "password": f.user.Password})
	return []benchPath{
		{
			Name: "direct", About: "GET users/{id} straight to the users service (identity headers set by the client)",
			Targets: static(vegeta.Target{Method: http.MethodGet, URL: usersURL + userPath, Header: withIdentity}),
			Judge:   expect(http.StatusOK), Rates: rates,
		},
		{
			Name: floorPath, About: "the same through one Envoy with nothing but its router (HTTP/1.1, plaintext, no access log): the least an Envoy hop costs here",
			Targets: static(vegeta.Target{Method: http.MethodGet, URL: floorURL + userPath, Header: withIdentity}),
			Judge:   expect(http.StatusOK), Rates: rates,
		},
		{
			Name: "sidecar", About: "the same through the edge's sidecar upstream listener: Envoy -> mTLS -> users' sidecar -> users",
			Targets: static(vegeta.Target{Method: http.MethodGet, URL: edgeUsersURL + userPath, Header: withIdentity}),
			Judge:   expect(http.StatusOK), Rates: rates,
		},
		{
			Name: "ingress-jwt", About: "GET " + benchRoutePrefix + "users/{id}: ingress, JWT and a local bucket, no global limit, mTLS to users' sidecar",
			Targets: static(vegeta.Target{Method: http.MethodGet, URL: ingressURL + benchRoutePrefix + "users/" + f.user.id(), Header: userToken}),
			Judge:   expect(http.StatusOK), Rates: rates,
		},
		{
			Name: "ingress-full", About: "GET /api/users/users/{id}: ingress, JWT, local and global rate limits (ratelimit, Redis), mTLS to users' sidecar",
			Targets: static(vegeta.Target{Method: http.MethodGet, URL: ingressURL + "/api/users/users/" + f.user.id(), Header: userToken}),
			Judge:   expect(http.StatusOK), Rates: rates,
		},
		{
			Name: "cache-hit", About: "GET /api/products/products/{id} repeated: ingress (full) -> edge sidecar -> edge -> Redis HIT (HIT or STALE expected)",
			Targets: static(vegeta.Target{Method: http.MethodGet, URL: ingressURL + productPath, Header: userToken}),
			Judge:   expect(http.StatusOK, "HIT", "STALE"), Rates: rates,
		},
		{
			Name: "cache-miss", About: "the same with a distinct ?bench_miss= each time (the cache keys on the query, products ignores it): Redis lookup, origin through the mesh, Redis store",
			Targets: func() vegeta.Targeter {
				return func(t *vegeta.Target) error {
					t.Method, t.Header = http.MethodGet, userToken
					t.URL = ingressURL + productPath + "?bench_miss=" + f.runID + "-" + strconv.FormatUint(f.missSeq.Add(1), 10)
					return nil
				}
			},
			Judge: expect(http.StatusOK, "MISS"), Rates: rates,
		},
		{
			Name: "write", About: "POST /api/products/products as the admin: ingress (full) -> products, INSERT with its outbox event, cache purge",
			Targets: static(vegeta.Target{Method: http.MethodPost, URL: ingressURL + "/api/products/products", Header: adminWrite, Body: []byte(productBody)}),
			Judge:   expect(http.StatusCreated), Rates: rates,
		},
		{
			Name: "login", About: "POST /api/users/login: ingress -> users, an argon2id verification per request (its own rates, -login-rates)",
			Targets: static(vegeta.Target{Method: http.MethodPost, URL: ingressURL + "/api/users/login", Header: http.Header{"Content-Type": {"application/json"}}, Body: loginBody}),
			Judge:   expect(http.StatusOK), Rates: loginRates,
		},
	}
}

// poll calls f every 100 ms until it succeeds, returns an error made by
// localenv.StopPolling, or within runs out.
func poll(ctx context.Context, within time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	return localenv.Poll(ctx, 100*time.Millisecond, f)
}
