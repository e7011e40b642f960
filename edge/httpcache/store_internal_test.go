package httpcache

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

// A pool timeout (more calls in flight than connections) bypasses that one
// call but does not rest the store: the next call uses Redis again. A
// Redis that cannot be reached rests it.
func TestOnlyRedisFailuresRestTheStore(t *testing.T) {
	client := redis.NewClient(&redis.Options{
		Addr: localenvtest.RedisAddr(t), PoolSize: 1, PoolTimeout: 50 * time.Millisecond, MaxRetries: -1,
	})
	t.Cleanup(func() { _ = client.Close() })
	s, err := NewStore(StoreConfig{Client: client, RetryAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// Hold the pool's only connection with a blocking pop.
	held := make(chan error, 1)
	go func() { held <- client.BLPop(context.Background(), time.Second, t.Name()).Err() }()
	localenvtest.WaitUntil(t, 5*time.Second, "the connection to be taken", func() bool { return client.PoolStats().IdleConns == 0 && client.PoolStats().TotalConns == 1 })
	if err := s.Ping(t.Context()); !errors.Is(err, redis.ErrPoolTimeout) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping with the pool taken: %v, want a pool timeout", err)
	}
	if !s.available() {
		t.Fatal("a pool timeout rested the store")
	}
	if err := <-held; !errors.Is(err, redis.Nil) {
		t.Fatalf("BLPOP: %v", err)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping after the pool freed up: %v", err)
	}

	// Nothing listens here: a dial failure is Redis failing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	down := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = down.Close() })
	unreachable, err := NewStore(StoreConfig{Client: down, RetryAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := unreachable.Ping(t.Context()); err == nil {
		t.Fatal("Ping of an unreachable Redis succeeded")
	}
	if unreachable.available() {
		t.Fatal("an unreachable Redis did not rest the store")
	}
}
