package localenvtest_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

func TestMain(m *testing.M) {
	os.Exit(localenvtest.Run(m, localenvtest.Postgres, localenvtest.Redis, localenvtest.RabbitMQ, localenvtest.Consul))
}

func TestSharedPostgres(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, localenvtest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var db string
	var superuser bool
	if err := conn.QueryRow(ctx, `SELECT current_database(), rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&db, &superuser); err != nil {
		t.Fatal(err)
	}
	if db != "postgres" || !superuser {
		t.Errorf("connected to %q as superuser=%v; want the postgres database as a superuser", db, superuser)
	}
}

func TestSharedRedis(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	client := redis.NewClient(&redis.Options{Addr: localenvtest.RedisAddr(t)})
	defer client.Close()
	if err := client.Set(ctx, t.Name(), "ok", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := client.Get(ctx, t.Name()).Result(); err != nil || got != "ok" {
		t.Fatalf("GET = %q, %v", got, err)
	}
}

func TestSharedRabbitMQ(t *testing.T) {
	t.Parallel()
	roundTrip(t, localenvtest.AMQPURL(t), "testenv-shared")
}

// TestPrivateRabbitMQOutage stops and restarts a test's own broker while the
// shared one keeps serving.
func TestPrivateRabbitMQOutage(t *testing.T) {
	t.Parallel()
	private := localenvtest.StartRabbitMQ(t)
	if private.URL() == localenvtest.AMQPURL(t) {
		t.Fatal("the private broker is the shared one")
	}
	roundTrip(t, private.URL(), "before-outage")

	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := private.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	if conn, err := amqp.Dial(private.URL()); err == nil {
		conn.Close()
		t.Fatal("dialed the private broker while it was stopped")
	}
	roundTrip(t, localenvtest.AMQPURL(t), "shared-during-outage")

	startCtx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := private.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, private.URL(), "after-outage")
}

func TestPrivateRedisOutage(t *testing.T) {
	t.Parallel()
	private := localenvtest.StartRedis(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	client := redis.NewClient(&redis.Options{Addr: private.Addr(), MaxRetries: -1})
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := private.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := client.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded while the private Redis was stopped")
	}
	if err := private.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after restart: %v", err)
	}
}

func TestSharedConsul(t *testing.T) {
	t.Parallel()
	client := localenvtest.ConsulClient(t)
	leader, err := client.Status().Leader()
	if err != nil || leader == "" {
		t.Fatalf("leader = %q, %v", leader, err)
	}
	roots, _, err := client.Connect().CARoots(nil)
	if err != nil || len(roots.Roots) == 0 {
		t.Fatalf("Connect CA roots = %v, %v", roots, err)
	}
}

// TestPrivateConsul writes to a test's own agent, which the shared one
// never sees.
func TestPrivateConsul(t *testing.T) {
	t.Parallel()
	private := localenvtest.StartConsul(t)
	if private.HTTPAddr() == localenvtest.ConsulAddr(t) {
		t.Fatal("the private agent is the shared one")
	}
	client, err := private.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.KV().Put(&api.KVPair{Key: t.Name(), Value: []byte("x")}, nil); err != nil {
		t.Fatal(err)
	}
	if kv, _, err := localenvtest.ConsulClient(t).KV().Get(t.Name(), nil); err != nil || kv != nil {
		t.Errorf("shared agent has the private key: %v, %v", kv, err)
	}
}

// roundTrip publishes a message to a fresh exclusive queue and reads it back.
func roundTrip(t *testing.T, url, body string) {
	t.Helper()
	ch := localenvtest.AMQPChannel(t, url)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := ch.PublishWithContext(ctx, "", q.Name, false, false, amqp.Publishing{Body: []byte(body)}); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-deliveries:
		if string(d.Body) != body {
			t.Fatalf("consumed %q, want %q", d.Body, body)
		}
	case <-ctx.Done():
		t.Fatalf("no delivery of %q: %v", body, ctx.Err())
	}
}
