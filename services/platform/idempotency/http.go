package idempotency

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"

	"github.com/portico-mesh/portico/services/platform/problem"
)

// A Record keeps a write's response under the request's key, in the
// write's transaction: the store that runs the transaction calls Keep
// with the value it wrote, last, just before it commits. The zero Record
// (a request without a key) keeps nothing.
type Record[T any] struct {
	store   *Store
	request Request
	respond func(T) (Response, error)
}

// Keep stores the response built from v under the record's key in tx.
// Its error must roll tx back.
func (r Record[T]) Keep(ctx context.Context, tx pgx.Tx, v T) error {
	if r.store == nil {
		return nil
	}
	resp, err := r.respond(v)
	if err != nil {
		return err
	}
	return r.store.keep(ctx, tx, r.request, resp)
}

// Serve answers a write that may carry an Idempotency-Key, for the
// caller principal (keys are per caller; "" is every anonymous caller).
//
// Without a key, it runs write and sends respond's response. With one,
// it answers a request seen before from its stored response (with
// Idempotent-Replayed: true), and otherwise runs write, which passes the
// Record to its transaction, and sends the same response the Record
// stored. respond must be a pure function of the written value, so the
// stored and the sent responses are one.
//
// Its errors are problems (400 bad key, 409 in flight, 422 key reused)
// or write's own. s is required: a route that serves keys has a store.
func Serve[T any](c *fiber.Ctx, s *Store, principal string, respond func(T) (Response, error), write func(Record[T]) (T, error)) error {
	req, err := requestOf(c, principal)
	if err != nil {
		return err
	}
	var record Record[T]
	if req != nil {
		if replayed, err := replay(c, s, *req); replayed || err != nil {
			return err
		}
		record = Record[T]{store: s, request: *req, respond: respond}
	}
	v, err := write(record)
	switch {
	case errors.Is(err, errRaced):
		// The concurrent request with the key committed while this one
		// waited: its response is the answer.
		if replayed, err := replay(c, s, *req); replayed || err != nil {
			return err
		}
		return asProblem(c, ErrInFlight)
	case err != nil:
		return asProblem(c, err)
	}
	resp, err := respond(v)
	if err != nil {
		return err
	}
	return send(c, resp)
}

// requestOf reads the request's key: nil without one, a 400 problem for
// a malformed one or for more than one.
func requestOf(c *fiber.Ctx, principal string) (*Request, error) {
	values, ok := c.GetReqHeaders()[HeaderKey]
	if !ok {
		return nil, nil
	}
	if len(values) != 1 {
		return nil, badKey("must be sent once")
	}
	key, err := ParseKey(values[0])
	if err != nil {
		return nil, err
	}
	return &Request{Principal: principal, Key: key, Fingerprint: fingerprint(c)}, nil
}

// fingerprint hashes what makes two requests the same: method, path with
// query, and body.
func fingerprint(c *fiber.Ctx) []byte {
	h := sha256.New()
	h.Write([]byte(c.Method()))
	h.Write([]byte{0})
	h.Write([]byte(c.OriginalURL()))
	h.Write([]byte{0})
	h.Write(c.Body())
	return h.Sum(nil)
}

// lookupTimeout bounds the look-up of a key before the write.
const lookupTimeout = 5 * time.Second

// replay sends the stored response of req if there is one.
func replay(c *fiber.Ctx, s *Store, req Request) (bool, error) {
	ctx, cancel := context.WithTimeout(c.UserContext(), lookupTimeout)
	defer cancel()
	resp, found, err := s.Lookup(ctx, req)
	if err != nil || !found {
		return false, asProblem(c, err)
	}
	c.Set(HeaderReplayed, "true")
	return true, send(c, resp)
}

func send(c *fiber.Ctx, resp Response) error {
	for k, v := range resp.Header {
		c.Set(k, v)
	}
	return c.Status(resp.Status).Send(resp.Body)
}

// asProblem turns this package's errors into their problems and leaves
// every other error as it is. A key in flight says when to retry.
func asProblem(c *fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, ErrKeyReused):
		return problem.New(problem.TypeValidation, http.StatusUnprocessableEntity,
			"this "+HeaderKey+" was used for a different request (method, path or body); use a new key for a new request")
	case errors.Is(err, ErrInFlight):
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(inFlightWait.Seconds())))
		return problem.Conflict("a request with this " + HeaderKey + " is still being processed; retry it later")
	}
	return err
}
