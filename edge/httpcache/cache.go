// Package httpcache is the edge's shared HTTP cache (RFC 9111) over Redis.
//
// The origin decides what is stored and for how long (Cache-Control,
// Expires, Vary); nothing else does. A response to a request with
// credentials or a verified identity is stored only when the origin allows
// it explicitly, and identity headers are part of the key whenever the
// origin varies on them, so no caller ever receives a response made for
// another. Entries are tagged (Surrogate-Key) and purged by tag.
//
// When Redis fails, requests go to the origin with X-Cache: BYPASS and no
// error; Redis is tried again after a short pause.
package httpcache

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portico-mesh/portico/services/platform/contract"
	"github.com/portico-mesh/portico/services/platform/telemetry"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// Config configures the cache middleware.
type Config struct {
	// Next skips the cache for a request when it returns true.
	Next func(c *fiber.Ctx) bool
	// Store holds the entries. Required.
	Store *Store
	// Origin answers what the cache cannot. Required.
	Origin Origin
	// MaxEntryBytes is the largest body stored (default 1 MiB); larger
	// responses are passed on and not stored.
	MaxEntryBytes int
	// OriginTimeout bounds one origin exchange (default 15s). A shared
	// fetch runs on after the client that started it went away, because
	// others wait for it.
	OriginTimeout time.Duration
	// MaxConcurrentRefreshes bounds background refreshes (default 16);
	// beyond it stale entries are served without scheduling one.
	MaxConcurrentRefreshes int
	Log                    *slog.Logger
	// Registerer receives the cache metrics (default: a private registry).
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// ConfigDefault is the configuration New starts from.
var ConfigDefault = Config{
	MaxEntryBytes:          1 << 20,
	OriginTimeout:          15 * time.Second,
	MaxConcurrentRefreshes: 16,
}

func configDefault(config ...Config) Config {
	if len(config) == 0 {
		return ConfigDefault
	}
	cfg := config[0]
	if cfg.MaxEntryBytes <= 0 {
		cfg.MaxEntryBytes = ConfigDefault.MaxEntryBytes
	}
	if cfg.OriginTimeout <= 0 {
		cfg.OriginTimeout = ConfigDefault.OriginTimeout
	}
	if cfg.MaxConcurrentRefreshes <= 0 {
		cfg.MaxConcurrentRefreshes = ConfigDefault.MaxConcurrentRefreshes
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg
}

// Cache is the cache middleware and the background refreshes it owns.
type Cache struct {
	cfg     Config
	metrics *metrics
	flight  singleflight.Group

	// Background refreshes run under ctx; Close cancels it and waits.
	ctx        context.Context
	cancel     context.CancelFunc
	mu         sync.Mutex // guards closed and wg.Add against Close
	closed     bool
	wg         sync.WaitGroup
	slots      chan struct{}
	refreshing sync.Map // variant key -> struct{}
}

// New returns the cache. Close it to stop its background work.
func New(config ...Config) (*Cache, error) {
	cfg := configDefault(config...)
	if cfg.Store == nil || cfg.Origin == nil {
		return nil, errors.New("httpcache: Config.Store and Config.Origin are required")
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Cache{
		cfg:     cfg,
		metrics: newMetrics(cfg.Registerer),
		ctx:     ctx,
		cancel:  cancel,
		slots:   make(chan struct{}, cfg.MaxConcurrentRefreshes),
	}, nil
}

// Close cancels background refreshes and waits for them to end.
func (c *Cache) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

// served is what the cache answers with.
type served struct {
	status int
	header http.Header
	body   []byte
	xcache string
	age    time.Duration // sent as Age when from the cache
}

// Handler is the Fiber middleware. Requests without X-Portico-Upstream are
// not for the cache and go to the next handler.
func (c *Cache) Handler() fiber.Handler {
	return func(fc *fiber.Ctx) error {
		if c.cfg.Next != nil && c.cfg.Next(fc) {
			return fc.Next()
		}
		upstream := fc.Get(contract.HeaderUpstream)
		if upstream == "" {
			return fc.Next()
		}
		req := requestFromFiber(fc, upstream)
		out, err := c.serve(fc.UserContext(), req)
		if err != nil {
			return err
		}
		return write(fc, req, out)
	}
}

// requestFromFiber copies what the origin needs out of the Fiber context.
func requestFromFiber(fc *fiber.Ctx, upstream string) *Request {
	h := make(http.Header)
	fc.Request().Header.VisitAll(func(k, v []byte) {
		h.Add(string(k), string(v))
	})
	stripHopByHop(h)
	h.Del(contract.HeaderUpstream)
	h.Del("Host")
	req := &Request{
		Upstream: strings.Clone(upstream),
		Method:   strings.Clone(fc.Method()),
		URI:      string(fc.Request().URI().RequestURI()),
		Header:   h,
	}
	if body := fc.Body(); len(body) > 0 {
		req.Body = bytes.Clone(body)
	}
	return req
}

func (c *Cache) serve(ctx context.Context, req *Request) (served, error) {
	switch req.Method {
	case http.MethodGet, http.MethodHead:
	default:
		return c.passThrough(ctx, req, "method")
	}
	if req.Header.Get("Range") != "" {
		// Ranges are not stored; the origin answers them.
		return c.passThrough(ctx, req, "range")
	}
	resource := resourceID(req)
	f, err := c.cfg.Store.lookup(ctx, resource, req)
	if err != nil {
		// While the store rests after a failure, bypassing is expected and
		// not logged again for every request.
		if !errors.Is(err, errResting) {
			c.cfg.Log.WarnContext(ctx, "cache store failing; bypassing it", "error", err.Error())
		}
		return c.passThrough(ctx, req, "redis")
	}
	if f.entry != nil && requestAllowsStored(req) && (f.entry.Shared || !req.authenticated()) {
		now := c.cfg.Now()
		age := f.entry.age(now)
		switch {
		case age < f.entry.FreshFor:
			c.metrics.hits.WithLabelValues(req.Upstream).Inc()
			return fromEntry(f.entry, Hit, age), nil
		case age < f.entry.FreshFor+f.entry.StaleFor:
			c.metrics.stale.WithLabelValues(req.Upstream).Inc()
			c.refreshInBackground(req, resource, f)
			return fromEntry(f.entry, Stale, age), nil
		}
	}
	c.metrics.misses.WithLabelValues(req.Upstream).Inc()
	if req.Method == http.MethodHead {
		// Only GET responses are stored; a HEAD miss is answered as is.
		resp, err := c.roundTrip(ctx, req)
		if err != nil {
			return served{}, err
		}
		return fromOrigin(resp, Miss), nil
	}
	return c.fetchShared(ctx, req, resource, f)
}

// passThrough sends req to the origin as it is, without the cache. A
// successful unsafe request invalidates what is stored for its path.
func (c *Cache) passThrough(ctx context.Context, req *Request, reason string) (served, error) {
	c.metrics.bypasses.WithLabelValues(req.Upstream, reason).Inc()
	resp, err := c.roundTrip(ctx, req)
	if err != nil {
		return served{}, err
	}
	if unsafeMethod(req.Method) && resp.Status < 400 {
		if _, err := c.cfg.Store.Purge(ctx, uriTag(req.Upstream, req.Path())); err != nil {
			c.cfg.Log.WarnContext(ctx, "invalidation after an unsafe request failed", "path", req.Path(), "error", err.Error())
		}
	}
	return fromOrigin(resp, Bypass), nil
}

func unsafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}

// fetched is one origin exchange for a cacheable GET.
type fetched struct {
	req  *Request // the request whose exchange it was
	resp *Response
	// requestTime and responseTime bracket the exchange.
	requestTime, responseTime time.Time
}

// fetchShared makes one origin request for all concurrent misses of one
// variant. A waiter reuses the result only if it may be stored for its
// own request too (credentials, Vary): otherwise it asks the origin
// itself. So collapsing never hands one caller's response to another.
func (c *Cache) fetchShared(ctx context.Context, req *Request, resource string, f found) (served, error) {
	led := false
	v, err, _ := c.flight.Do(f.flightKey(), func() (any, error) {
		led = true
		// The fetch serves every waiter, so it must not end with the
		// client that happened to start it.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.OriginTimeout)
		defer cancel()
		return c.fetchAndStore(fctx, req, resource, f)
	})
	if err != nil {
		return served{}, err
	}
	res, ok := v.(*fetched)
	if !ok {
		return served{}, errors.New("httpcache: unexpected shared result")
	}
	if !led && !reusableFor(res, req, c.cfg.MaxEntryBytes) {
		if res, err = c.fetchAndStore(ctx, req, resource, f); err != nil {
			return served{}, err
		}
	}
	return fromOrigin(res.resp, Miss), nil
}

// flightKey is what concurrent misses collapse on: the variant, and the
// purge counter their lookup saw. A request that looked up after a purge
// never joins a fetch that started before it, whose response may predate
// the change the purge announced.
func (f found) flightKey() string {
	return f.variantKey + "@" + strconv.FormatInt(f.purgeSeq, 10)
}

// reusableFor reports whether the response fetched for res.req may answer
// req: it must be storable for req and select the same variant.
func reusableFor(res *fetched, req *Request, maxBody int) bool {
	if !decideStorage(req, res.resp, res.requestTime, res.responseTime, maxBody).storable() {
		return false
	}
	vary := varyNames(res.resp.Header)
	return variantID(req, vary) == variantID(res.req, vary)
}

// fetchAndStore asks the origin for a complete response to req and stores
// it when the origin allows.
func (c *Cache) fetchAndStore(ctx context.Context, req *Request, resource string, f found) (*fetched, error) {
	originReq := req.clone()
	// The stored response must be complete: the client's validators are
	// answered here, against it.
	for _, h := range []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range"} {
		originReq.Header.Del(h)
	}
	res := &fetched{req: req, requestTime: c.cfg.Now()}
	resp, err := c.roundTrip(ctx, originReq)
	if err != nil {
		return nil, err
	}
	res.resp, res.responseTime = resp, c.cfg.Now()

	decision := decideStorage(req, resp, res.requestTime, res.responseTime, c.cfg.MaxEntryBytes)
	if !decision.storable() {
		c.metrics.notStored.WithLabelValues(req.Upstream, decision.reason).Inc()
		return res, nil
	}
	vary := varyNames(resp.Header)
	if !equalStrings(vary, f.vary) {
		// The origin varies differently from what the index says: the
		// entry's key follows the response.
		f.variantKey = c.cfg.Store.key("e", resource, variantID(req, vary))
	}
	e := &entry{
		Status:     resp.Status,
		Header:     storedHeader(resp.Header),
		StoredAt:   res.responseTime,
		InitialAge: decision.initialAge,
		FreshFor:   decision.freshFor,
		StaleFor:   decision.staleFor,
		Shared:     decision.shared,
		Body:       resp.Body,
	}
	tags := append(surrogateKeys(resp.Header.Get(contract.HeaderSurrogateKey)), uriTag(req.Upstream, req.Path()))
	stored, err := c.cfg.Store.save(ctx, resource, f, vary, e, tags, ttlFor(e))
	switch {
	case err != nil:
		c.metrics.notStored.WithLabelValues(req.Upstream, "redis").Inc()
		c.cfg.Log.WarnContext(ctx, "storing a response failed", "error", err.Error())
	case !stored:
		c.metrics.notStored.WithLabelValues(req.Upstream, "purged-meanwhile").Inc()
	}
	return res, nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// roundTrip asks the origin, within OriginTimeout, and records how long
// it took.
func (c *Cache) roundTrip(ctx context.Context, req *Request) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.OriginTimeout)
	defer cancel()
	start := time.Now()
	resp, err := c.cfg.Origin.RoundTrip(ctx, req)
	status := "error"
	if err == nil {
		status = statusClass(resp.Status)
	}
	telemetry.Observe(ctx, c.metrics.origin.WithLabelValues(req.Upstream, status), time.Since(start).Seconds())
	return resp, err
}

func statusClass(code int) string {
	switch {
	case code >= 500:
		return "5xx"
	case code >= 400:
		return "4xx"
	case code >= 300:
		return "3xx"
	default:
		return "2xx"
	}
}

// refreshInBackground refetches a stale entry while it is being served. At
// most one refresh per variant runs, and at most MaxConcurrentRefreshes in
// all; each ends with Close.
func (c *Cache) refreshInBackground(req *Request, resource string, f found) {
	if _, busy := c.refreshing.LoadOrStore(f.variantKey, struct{}{}); busy {
		return
	}
	select {
	case c.slots <- struct{}{}:
	default:
		c.refreshing.Delete(f.variantKey)
		c.metrics.refreshes.WithLabelValues(req.Upstream, "dropped").Inc()
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.slots
		c.refreshing.Delete(f.variantKey)
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	req = req.clone()
	// A stale entry is a stored GET, whatever method found it (HEAD).
	req.Method = http.MethodGet
	go func() {
		defer c.wg.Done()
		defer func() { <-c.slots }()
		defer c.refreshing.Delete(f.variantKey)
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.OriginTimeout)
		defer cancel()
		// A request that read the stale entry just before the previous
		// refresh stored its successor arrives here after that refresh
		// ended: the store, read again, tells, and the origin is spared a
		// second fetch.
		if cur, err := c.cfg.Store.lookup(ctx, resource, req); err == nil && cur.entry != nil && cur.entry.age(c.cfg.Now()) < cur.entry.FreshFor {
			c.metrics.refreshes.WithLabelValues(req.Upstream, "already-fresh").Inc()
			return
		}
		_, err, _ := c.flight.Do(f.flightKey(), func() (any, error) {
			return c.fetchAndStore(ctx, req, resource, f)
		})
		result := "done"
		if err != nil {
			result = "failed"
			c.cfg.Log.Warn("background refresh failed", "upstream", req.Upstream, "path", req.Path(), "error", err.Error())
		}
		c.metrics.refreshes.WithLabelValues(req.Upstream, result).Inc()
	}()
}

// Fields never stored nor replayed from the origin: the edge sets its own
// request id, trace context, Age, X-Cache and Date, and tags are for the
// edge alone. A stored traceparent would name the trace of the request
// that filled the cache, not of the one it answers.
var notReplayed = []string{contract.HeaderSurrogateKey, HeaderXCache, HeaderAge, "X-Request-Id", "Traceparent", "Tracestate", "Date", "Set-Cookie"}

func storedHeader(h http.Header) http.Header {
	out := h.Clone()
	stripHopByHop(out)
	for _, name := range notReplayed {
		out.Del(name)
	}
	return out
}

func fromEntry(e *entry, xcache string, age time.Duration) served {
	return served{status: e.Status, header: e.Header, body: e.Body, xcache: xcache, age: age}
}

func fromOrigin(resp *Response, xcache string) served {
	h := resp.Header.Clone()
	stripHopByHop(h)
	for _, name := range []string{contract.HeaderSurrogateKey, HeaderXCache, "X-Request-Id", "Traceparent", "Tracestate", "Date"} {
		h.Del(name)
	}
	return served{status: resp.Status, header: h, body: resp.Body, xcache: xcache, age: -1}
}

// notModifiedFields are what a 304 carries (RFC 9110 section 15.4.5).
var notModifiedFields = []string{"Cache-Control", "Content-Location", "ETag", "Expires", "Vary"}

func write(fc *fiber.Ctx, req *Request, out served) error {
	status, header := out.status, out.header
	if out.xcache != Bypass && status == http.StatusOK && notModified(req.Header, header) {
		status = http.StatusNotModified
		kept := make(http.Header, len(notModifiedFields))
		for _, name := range notModifiedFields {
			for _, v := range header.Values(name) {
				kept.Add(name, v)
			}
		}
		header = kept
	}
	rh := &fc.Response().Header
	for name, values := range header {
		for i, v := range values {
			if i == 0 {
				rh.Set(name, v)
			} else {
				rh.Add(name, v)
			}
		}
	}
	rh.Set(HeaderXCache, out.xcache)
	if out.age >= 0 {
		rh.Set(HeaderAge, formatSeconds(out.age))
	}
	fc.Status(status)
	if status == http.StatusNotModified || status == http.StatusNoContent || req.Method == http.MethodHead {
		fc.Response().ResetBody()
		return nil
	}
	return fc.Send(out.body)
}
