package localenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

// otherHost is an address of this machine the servers do not listen on by
// default: Linux answers the whole of 127.0.0.0/8 on loopback. (Clients
// still come from 127.0.0.1, so this shows the listeners, not
// PostgreSQL's or RabbitMQ's rules for clients elsewhere; e2e/nomad's
// containers use those.)
const otherHost = "127.0.0.2"

// refused requires that nothing accepts on otherHost:port.
func refused(t *testing.T, port int) {
	t.Helper()
	if c, err := net.Dial("tcp", net.JoinHostPort(otherHost, strconv.Itoa(port))); err == nil {
		c.Close()
		t.Fatalf("%s:%d accepts without Host", otherHost, port)
	}
}

// TestServersListenOnHost: with Host set, PostgreSQL, Redis, RabbitMQ and
// Consul answer clients at that address as well as on 127.0.0.1; without
// it, only on 127.0.0.1.
func TestServersListenOnHost(t *testing.T) {
	dir := instanceDir(t)
	at := func(port int) string { return net.JoinHostPort(otherHost, strconv.Itoa(port)) }

	t.Run("postgres", func(t *testing.T) {
		pg, err := StartPostgres(startCtx(t), PostgresOptions{Dir: dir + "/postgres", Host: otherHost})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pg.Stop(stopCtx(t)) })
		conn, err := pgx.Connect(t.Context(), fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", at(pg.Port())))
		if err != nil {
			t.Fatal(err)
		}
		var one int
		if err := conn.QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1 at %s: %v %d", otherHost, err, one)
		}
		_ = conn.Close(context.Background())
	})
	t.Run("redis", func(t *testing.T) {
		r, err := StartRedis(startCtx(t), RedisOptions{Dir: dir + "/redis", Host: otherHost})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Stop(stopCtx(t)) })
		client := redis.NewClient(&redis.Options{Addr: at(r.Port())})
		defer client.Close()
		if err := client.Set(t.Context(), "k", "v", 0).Err(); err != nil {
			t.Fatalf("SET at %s: %v", otherHost, err)
		}
		plain, err := StartRedis(startCtx(t), RedisOptions{Dir: dir + "/redis-plain"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = plain.Stop(stopCtx(t)) })
		refused(t, plain.Port())
	})
	t.Run("rabbitmq", func(t *testing.T) {
		r, err := StartRabbitMQ(startCtx(t), RabbitMQOptions{Dir: dir + "/rabbitmq", Host: otherHost})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close(stopCtx(t)) })
		for _, host := range []string{"127.0.0.1", otherHost} {
			conn, err := amqp.Dial(fmt.Sprintf("amqp://guest:guest@%s/", net.JoinHostPort(host, strconv.Itoa(r.Port()))))
			if err != nil {
				t.Fatalf("AMQP at %s: %v", host, err)
			}
			conn.Close()
		}
	})
	t.Run("consul", func(t *testing.T) {
		c, err := StartConsul(startCtx(t), ConsulOptions{Dir: dir + "/consul", ClientHost: otherHost})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Stop(stopCtx(t)) })
		_, port, _ := net.SplitHostPort(c.HTTPAddr())
		resp, err := http.Get("http://" + net.JoinHostPort(otherHost, port) + "/v1/status/leader")
		if err != nil {
			t.Fatalf("Consul HTTP at %s: %v", otherHost, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("Consul HTTP at %s: %s", otherHost, resp.Status)
		}
	})
}
