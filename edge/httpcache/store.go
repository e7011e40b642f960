package httpcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"

	"github.com/portico-mesh/portico/services/platform/telemetry"
)

// StoreConfig configures a Store.
type StoreConfig struct {
	// Client is the Redis client; give it short dial, read and write
	// timeouts (see NewRedisClient): every request waits on it.
	Client redis.UniversalClient
	// Prefix starts every key (default "edge:cache").
	Prefix string
	// OpTimeout bounds one Redis operation (default 250ms).
	OpTimeout time.Duration
	// RetryAfter is how long the store stays unused after a Redis error
	// before it is tried again (default 1s). Meanwhile requests bypass the
	// cache at once instead of each waiting for a timeout.
	RetryAfter time.Duration
	// PurgeMarkerTTL is how long a purge is remembered, to refuse storing
	// a response fetched before it (default 10m; keep it above the
	// origin timeout).
	PurgeMarkerTTL time.Duration
}

// Store keeps responses in Redis, indexed by tag for purging.
//
// Keys, below the prefix:
//
//	m:<resource>            the Vary field names of the resource's variants
//	e:<resource>:<variant>  one stored response
//	t:<tag>                 set of the keys a tag covers
//	p:<tag>                 purge sequence number of the tag's last purge
//	seq                     purge sequence counter
//	evt:<event id>          events already applied (PurgeOnce)
type Store struct {
	cfg StoreConfig
	// downUntil is when, in Unix nanoseconds, Redis is tried again.
	downUntil atomic.Int64
}

// ErrUnavailable is returned while Redis is failing.
var ErrUnavailable = errors.New("cache store unavailable")

// errResting is returned without asking Redis during the pause after a
// failure.
var errResting = fmt.Errorf("%w: resting after a failure", ErrUnavailable)

// NewStore returns a store over cfg.Client.
func NewStore(cfg StoreConfig) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("httpcache: StoreConfig.Client is nil")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "edge:cache"
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 250 * time.Millisecond
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.PurgeMarkerTTL <= 0 {
		cfg.PurgeMarkerTTL = 10 * time.Minute
	}
	return &Store{cfg: cfg}, nil
}

// NewRedisClient returns a client for a redis:// URL with timeouts fit for
// a cache in the request path: a slow Redis must cost a request little
// more than timeout before it is bypassed.
func NewRedisClient(url string, timeout time.Duration) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	opts.DialTimeout = timeout
	opts.ReadTimeout = timeout
	opts.WriteTimeout = timeout
	opts.PoolTimeout = timeout
	opts.ContextTimeoutEnabled = true
	// A failed command or dial is not retried: the request goes to the
	// origin, and the store rests before Redis is tried again.
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	return redis.NewClient(opts), nil
}

// TraceRedis adds a span for every Redis command that client runs under a
// recording span (a request's, a purge's), a child of it; calls outside
// any (readiness probes, background refreshes) make none. Command
// arguments are not recorded: they hold cached bodies. With tracing off
// nothing is installed, so it costs nothing.
func TraceRedis(client *redis.Client, tracing telemetry.Tracing) error {
	if !tracing.Enabled() {
		return nil
	}
	if err := redisotel.InstrumentTracing(client,
		redisotel.WithTracerProvider(telemetry.ChildSpansOnly(tracing.Provider)),
		redisotel.WithDBStatement(false),
		redisotel.WithCallerEnabled(false),
	); err != nil {
		return fmt.Errorf("redis tracing: %w", err)
	}
	return nil
}

func (s *Store) key(parts ...string) string {
	return s.cfg.Prefix + ":" + strings.Join(parts, ":")
}

// available reports whether Redis may be used now.
func (s *Store) available() bool {
	return time.Now().UnixNano() >= s.downUntil.Load()
}

// failed records err, when it is a Redis failure, and returns it wrapped.
// The store rests only when Redis itself failed (a dial, a read, a
// timeout on the wire). A pool timeout says this process had more calls
// in flight than connections, usually because it is short of CPU: resting
// then would send every request of the next RetryAfter to the origin and
// add the load that starved it (measured under make bench at 500 rps:
// thousands of pool timeouts, each followed by a second of bypass). That
// one request is bypassed; the next ones try again.
func (s *Store) failed(op string, err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		return err
	}
	if !errors.Is(err, redis.ErrPoolTimeout) {
		s.downUntil.Store(time.Now().Add(s.cfg.RetryAfter).UnixNano())
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// Ping checks Redis, for readiness. It clears the back-off on success.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.cfg.Client.Ping(ctx).Err(); err != nil {
		return s.failed("ping", err)
	}
	s.downUntil.Store(0)
	return nil
}

// found is the result of a lookup.
type found struct {
	entry      *entry // nil on a miss
	variantKey string
	vary       []string
	// purgeSeq is the purge counter before the origin is asked; a
	// response is stored only if none of its tags was purged since.
	purgeSeq int64
}

type resourceMeta struct {
	Vary []string `json:"vary"`
}

// lookup finds the stored variant of resource that matches req.
//
// One round trip answers the common case: the resource's index, the purge
// counter and its variant for a response without Vary come in one
// pipeline. Only a resource that varies needs a second GET, for the
// variant the index names.
func (s *Store) lookup(ctx context.Context, resource string, req *Request) (found, error) {
	if !s.available() {
		return found{}, errResting
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	plainKey := s.key("e", resource, variantID(req, nil))
	pipe := s.cfg.Client.Pipeline()
	metaCmd := pipe.Get(ctx, s.key("m", resource))
	seqCmd := pipe.Get(ctx, s.key("seq"))
	plainCmd := pipe.Get(ctx, plainKey)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return found{}, s.failed("lookup", err)
	}
	f := found{variantKey: plainKey}
	if seq, err := seqCmd.Int64(); err == nil {
		f.purgeSeq = seq
	}
	raw, err := metaCmd.Bytes()
	if err != nil {
		// No index, no entry: save writes both at once.
		return f, nil
	}
	var meta resourceMeta
	if json.Unmarshal(raw, &meta) != nil {
		// An unreadable index is a miss; the next store rewrites it.
		return f, nil
	}
	f.vary = meta.Vary
	blob, err := plainCmd.Bytes()
	if len(meta.Vary) > 0 {
		f.variantKey = s.key("e", resource, variantID(req, meta.Vary))
		blob, err = s.cfg.Client.Get(ctx, f.variantKey).Bytes()
	}
	switch {
	case errors.Is(err, redis.Nil):
		return f, nil
	case err != nil:
		return found{}, s.failed("lookup", err)
	}
	if f.entry, err = decodeEntry(blob); err != nil {
		f.entry = nil // unreadable: a miss, overwritten by the next store
	}
	return f, nil
}

// saveScript stores an entry unless one of its tags was purged after the
// lookup that preceded the origin request (then the response may predate
// the change the purge announced), or Redis lost its data meanwhile (the
// counter went backwards).
//
// KEYS: seq, entry, meta, n tag sets, n purge markers.
// ARGV: lookup purge seq, ttl seconds, entry, meta, n.
var saveScript = redis.NewScript(`
local start = tonumber(ARGV[1])
local n = tonumber(ARGV[5])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < start then return 0 end
for i = 1, n do
  local purged = redis.call('GET', KEYS[3 + n + i])
  if purged and tonumber(purged) > start then return 0 end
end
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ttl)
local metaTTL = redis.call('TTL', KEYS[3])
if metaTTL < ttl then metaTTL = ttl end
redis.call('SET', KEYS[3], ARGV[4], 'EX', metaTTL)
for i = 1, n do
  local set = KEYS[3 + i]
  redis.call('SADD', set, KEYS[2], KEYS[3])
  if redis.call('TTL', set) < metaTTL then redis.call('EXPIRE', set, metaTTL) end
end
return 1
`)

// save stores e as the variant f.variantKey of resource, indexed under
// tags. It reports false when a purge since the lookup forbade it.
func (s *Store) save(ctx context.Context, resource string, f found, vary []string, e *entry, tags []string, ttl time.Duration) (bool, error) {
	if !s.available() {
		return false, errResting
	}
	blob, err := e.encode()
	if err != nil {
		return false, err
	}
	meta, err := json.Marshal(resourceMeta{Vary: vary})
	if err != nil {
		return false, fmt.Errorf("encode resource meta: %w", err)
	}
	keys := make([]string, 0, 3+2*len(tags))
	keys = append(keys, s.key("seq"), f.variantKey, s.key("m", resource))
	for _, t := range tags {
		keys = append(keys, s.key("t", t))
	}
	for _, t := range tags {
		keys = append(keys, s.key("p", t))
	}
	seconds := max(1, int64((ttl+time.Second-1)/time.Second))
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	stored, err := saveScript.Run(ctx, s.cfg.Client, keys, f.purgeSeq, seconds, blob, meta, len(tags)).Int()
	if err != nil {
		return false, s.failed("store", err)
	}
	return stored == 1, nil
}

// purgeScript deletes every key the tags cover and records the purge, so
// that a response fetched before it is not stored after it. With a dedupe
// key it does nothing, and returns -1, when that key exists, and sets it
// otherwise: applying an event and remembering it are one step.
//
// KEYS: seq, n tag sets, n purge markers, [dedupe key].
// ARGV: n, marker ttl seconds, [dedupe ttl seconds].
var purgeScript = redis.NewScript(`
local n = tonumber(ARGV[1])
local dedupe = KEYS[2 + 2 * n]
if dedupe and redis.call('EXISTS', dedupe) == 1 then return -1 end
local seq = redis.call('INCR', KEYS[1])
local deleted = 0
for i = 1, n do
  local members = redis.call('SMEMBERS', KEYS[1 + i])
  for _, key in ipairs(members) do
    deleted = deleted + redis.call('DEL', key)
  end
  redis.call('DEL', KEYS[1 + i])
  redis.call('SET', KEYS[1 + n + i], seq, 'EX', tonumber(ARGV[2]))
end
if dedupe then redis.call('SET', dedupe, '1', 'EX', tonumber(ARGV[3])) end
return deleted
`)

// Purge deletes every stored response tagged with any of tags and returns
// how many keys went.
func (s *Store) Purge(ctx context.Context, tags ...string) (int, error) {
	n, _, err := s.purge(ctx, "", 0, tags)
	return n, err
}

// PurgeOnce is Purge for an event: it purges only the first time it sees
// eventID within dedupeTTL, and reports whether it did. Purging and
// remembering the id are atomic, so a failure leaves the event to be
// applied again.
func (s *Store) PurgeOnce(ctx context.Context, eventID string, dedupeTTL time.Duration, tags ...string) (deleted int, applied bool, err error) {
	if eventID == "" {
		return 0, false, errors.New("httpcache: PurgeOnce without an event id")
	}
	return s.purge(ctx, eventID, dedupeTTL, tags)
}

func (s *Store) purge(ctx context.Context, eventID string, dedupeTTL time.Duration, tags []string) (int, bool, error) {
	// A purge is not skipped while requests bypass the store: it is the
	// one operation whose failure must be reported (the event is retried).
	keys := make([]string, 0, 2+2*len(tags))
	keys = append(keys, s.key("seq"))
	for _, t := range tags {
		keys = append(keys, s.key("t", t))
	}
	for _, t := range tags {
		keys = append(keys, s.key("p", t))
	}
	args := []any{len(tags), int64(s.cfg.PurgeMarkerTTL / time.Second)}
	if eventID != "" {
		keys = append(keys, s.key("evt", eventID))
		args = append(args, max(1, int64(dedupeTTL/time.Second)))
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout*4)
	defer cancel()
	n, err := purgeScript.Run(ctx, s.cfg.Client, keys, args...).Int()
	if err != nil {
		return 0, false, s.failed("purge", err)
	}
	if n < 0 {
		return 0, false, nil
	}
	return n, true, nil
}

// uriTag is the implicit tag of every entry of one path: an unsafe request
// to the path purges it (RFC 9111 section 4.4).
func uriTag(upstream, path string) string {
	return "uri:" + upstream + ":" + path
}

// validTag reports whether an origin-supplied tag is usable as part of a
// key: short, printable, no spaces.
func validTag(t string) bool {
	if t == "" || len(t) > 200 {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// surrogateKeys reads the tags of a response; at most maxTags are kept.
func surrogateKeys(v string) []string {
	const maxTags = 64
	var tags []string
	for _, t := range strings.Fields(v) {
		if validTag(t) && len(tags) < maxTags {
			tags = append(tags, t)
		}
	}
	return tags
}

// ttlFor is how long Redis keeps an entry: until it may no longer be
// served, even stale.
func ttlFor(e *entry) time.Duration {
	return max(time.Second, e.FreshFor+e.StaleFor-e.InitialAge)
}

// formatSeconds renders a duration as whole seconds for Age.
func formatSeconds(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Second), 10)
}
