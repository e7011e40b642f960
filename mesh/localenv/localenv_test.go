package localenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

const (
	testStartTimeout = 2 * time.Minute
	testStopTimeout  = 30 * time.Second
)

// instanceDir returns a fresh directory under /tmp that other users may
// enter, because PostgreSQL runs as "postgres" when the tests run as root
// and t.TempDir's directories are mode 0700.
func instanceDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "localenv-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func startCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testStartTimeout)
	t.Cleanup(cancel)
	return ctx
}

// stopCtx is not derived from t.Context, which is already canceled when
// cleanups run.
func stopCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testStopTimeout)
	t.Cleanup(cancel)
	return ctx
}

// children lists the live child processes of pid.
func children(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readProcStat(child); ok && st.ppid == pid && st.state != "Z" {
			pids = append(pids, child)
		}
	}
	return pids
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	st, ok := readProcStat(pid)
	return ok && st.state != "Z"
}

// members lists the live processes of group pgid.
func members(t *testing.T, pgid int) []int {
	t.Helper()
	pids, err := groupMembers(pgid)
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// requireGone fails the test if p or anything in its process group runs.
func requireGone(t *testing.T, p *Process) {
	t.Helper()
	if err := syscall.Kill(p.Pid(), 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("%s pid %d still exists after Stop (kill 0: %v)", p.name, p.Pid(), err)
	}
	if pids := members(t, p.Pid()); len(pids) > 0 {
		t.Errorf("%s process group %d still has members %v after Stop", p.name, p.Pid(), pids)
	}
}

func requireRunning(t *testing.T, p *Process) {
	t.Helper()
	if !running(p) {
		t.Fatalf("%s pid %d is not running", p.name, p.Pid())
	}
}

func requirePortClosed(t *testing.T, port int) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err == nil {
		conn.Close()
		t.Errorf("port %d still accepts connections", port)
	}
}

func TestFreePort(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("FreePort returned %d, which cannot be bound: %v", port, err)
	}
	l.Close()
}

func TestProcessStopGraceful(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, err := StartProcess(Command{Name: "sleep", Path: "/bin/sleep", Args: []string{"300"}, LogPath: filepath.Join(dir, "log")})
	if err != nil {
		t.Fatal(err)
	}
	requireRunning(t, p)
	if err := p.Stop(stopCtx(t)); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	requireGone(t, p)
	if err := p.Stop(stopCtx(t)); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestProcessStopEscalatesToSIGKILL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The shell and its child both ignore SIGTERM (ignored dispositions
	// are inherited), so only SIGKILL to the whole group ends them.
	p, err := StartProcess(Command{
		Name:    "stubborn",
		Path:    "/bin/sh",
		Args:    []string{"-c", `trap "" TERM; sleep 300 & wait`},
		LogPath: filepath.Join(dir, "log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Let the shell install the trap and fork sleep.
	deadline := time.Now().Add(5 * time.Second)
	for len(members(t, p.Pid())) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	group := members(t, p.Pid())
	if len(group) < 2 {
		t.Fatalf("expected shell and sleep in the group, got %v", group)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = p.Stop(ctx)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Stop = %v, want an error saying it was killed", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Stop took %v", elapsed)
	}
	requireGone(t, p)
	for _, pid := range group {
		if alive(pid) {
			t.Errorf("group member %d survived", pid)
		}
	}
}

// Kill ends a process that ignores its stop signal at once, with SIGKILL
// (the exit status says so), and the rest of its group with it.
func TestProcessKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, err := StartProcess(Command{
		Name:    "stubborn",
		Path:    "/bin/sh",
		Args:    []string{"-c", `trap "" TERM; sleep 300 & wait`},
		LogPath: filepath.Join(dir, "log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(members(t, p.Pid())) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	group := members(t, p.Pid())
	if len(group) < 2 {
		t.Fatalf("expected shell and sleep in the group, got %v", group)
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	requireGone(t, p)
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("exit status %v, want killed", err)
	}
	for _, pid := range group {
		if alive(pid) {
			t.Errorf("group member %d survived", pid)
		}
	}
	if err := p.Kill(); err != nil {
		t.Errorf("second Kill: %v", err)
	}
}

func TestProcessStopKillsStragglers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The shell stops on SIGTERM, but its child was forked while SIGTERM
	// was ignored and outlives it.
	p, err := StartProcess(Command{
		Name:    "leaky",
		Path:    "/bin/sh",
		Args:    []string{"-c", `trap "" TERM; sleep 300 & trap - TERM; wait`},
		LogPath: filepath.Join(dir, "log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(members(t, p.Pid())) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	group := members(t, p.Pid())
	if len(group) < 2 {
		t.Fatalf("expected shell and sleep in the group, got %v", group)
	}
	start := time.Now()
	if err := p.Stop(stopCtx(t)); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if elapsed := time.Since(start); elapsed < groupGrace {
		t.Errorf("Stop returned after %v, before the straggler's grace period", elapsed)
	}
	requireGone(t, p)
	for _, pid := range group {
		if alive(pid) {
			t.Errorf("group member %d survived", pid)
		}
	}
}

func TestProcessLogTailShowsCurrentRunOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "log")
	run := func(script string) *Process {
		p, err := StartProcess(Command{Name: "sh", Path: "/bin/sh", Args: []string{"-c", script}, LogPath: logPath})
		if err != nil {
			t.Fatal(err)
		}
		<-p.Done()
		return p
	}
	run("echo first-run")
	p := run("echo one; echo two >&2; echo three; exit 3")
	if got, want := p.LogTail(2), "two\nthree"; got != want {
		t.Errorf("LogTail(2) = %q, want %q", got, want)
	}
	if got := p.LogTail(10); strings.Contains(got, "first-run") {
		t.Errorf("LogTail(10) = %q includes the previous run", got)
	}
	var exitErr interface{ ExitCode() int }
	if !errors.As(p.Err(), &exitErr) || exitErr.ExitCode() != 3 {
		t.Errorf("Err() = %v, want exit status 3", p.Err())
	}
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	dir := instanceDir(t)

	start := time.Now()
	pg, err := StartPostgres(startCtx(t), PostgresOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("postgres: first start (initdb + start + ready) took %v", time.Since(start))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			if err := pg.Stop(stopCtx(t)); err != nil {
				t.Error(err)
			}
		}
	})

	if os.Geteuid() == 0 {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pg.proc.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" && f[1] == "0" {
				t.Errorf("postgres runs as root: %s", line)
			}
		}
	}

	ctx := t.Context()
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var version int
	var fsync, listen string
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('fsync'), current_setting('listen_addresses')`).Scan(&version, &fsync, &listen); err != nil {
		t.Fatal(err)
	}
	if version/10000 != 15 || fsync != "off" || listen != "127.0.0.1" {
		t.Errorf("server_version_num=%d fsync=%s listen_addresses=%s; want 15xxxx, off, 127.0.0.1", version, fsync, listen)
	}
	for _, sql := range []string{
		`CREATE TABLE kept (v text)`,
		`INSERT INTO kept VALUES ('survives restart')`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// Left open on purpose: fast shutdown must not wait for clients.
	defer conn.Close(context.Background())

	// PostgreSQL's helpers and backends call setsid, so they are not in
	// the postmaster's process group; check them by parentage.
	helpers := children(t, pg.proc.Pid())
	if len(helpers) == 0 {
		t.Fatal("found no postgres helper processes")
	}
	start = time.Now()
	if err := pg.Stop(stopCtx(t)); err != nil {
		t.Fatal(err)
	}
	stopped = true
	t.Logf("postgres: stop took %v", time.Since(start))
	requireGone(t, pg.proc)
	for _, pid := range helpers {
		if alive(pid) {
			t.Errorf("postgres helper %d survived Stop", pid)
		}
	}
	requirePortClosed(t, pg.Port())

	// Start restarts the same server on its cluster and port.
	if err := pg.Start(startCtx(t)); err != nil {
		t.Fatal(err)
	}
	restarted, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var kept string
	if err := restarted.QueryRow(ctx, `SELECT v FROM kept`).Scan(&kept); err != nil || kept != "survives restart" {
		t.Errorf("after Start: v=%q err=%v", kept, err)
	}
	restarted.Close(ctx)
	if err := pg.Stop(stopCtx(t)); err != nil {
		t.Fatal(err)
	}

	// A second start on the same Dir reuses the cluster.
	initdbLog, err := os.Stat(filepath.Join(dir, "initdb.log"))
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	pg2, err := StartPostgres(startCtx(t), PostgresOptions{Dir: dir, Port: pg.Port()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("postgres: restart on existing cluster took %v", time.Since(start))
	defer func() {
		if err := pg2.Stop(stopCtx(t)); err != nil {
			t.Error(err)
		}
		requireGone(t, pg2.proc)
	}()
	if fi, err := os.Stat(filepath.Join(dir, "initdb.log")); err != nil || !fi.ModTime().Equal(initdbLog.ModTime()) {
		t.Errorf("initdb ran again on an initialized cluster (%v)", err)
	}
	conn2, err := pgx.Connect(ctx, pg2.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(context.Background())
	var v string
	if err := conn2.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != "survives restart" {
		t.Errorf("after restart: v=%q err=%v", v, err)
	}
}

func TestPostgresUnreachableDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root runs PostgreSQL as another user")
	}
	private := t.TempDir() // mode 0700, owned by root
	_, err := StartPostgres(startCtx(t), PostgresOptions{Dir: filepath.Join(private, "pg")})
	if err == nil || !strings.Contains(err.Error(), "cannot enter") {
		t.Fatalf("StartPostgres in a 0700 root directory = %v, want a clear permission error", err)
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	start := time.Now()
	r, err := StartRedis(startCtx(t), RedisOptions{Dir: instanceDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("redis: start took %v", time.Since(start))
	t.Cleanup(func() {
		if err := r.Stop(stopCtx(t)); err != nil {
			t.Error(err)
		}
	})
	ctx := t.Context()
	client := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer client.Close()
	if err := client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := client.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v", got, err)
	}

	// Outage.
	proc := r.proc
	if err := r.Stop(stopCtx(t)); err != nil {
		t.Fatal(err)
	}
	requireGone(t, proc)
	if err := client.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded while Redis is stopped")
	}

	// Recovery on the same address, with the same client.
	addr := r.Addr()
	start = time.Now()
	if err := r.Start(startCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Logf("redis: restart took %v", time.Since(start))
	if r.Addr() != addr {
		t.Errorf("address changed from %s to %s", addr, r.Addr())
	}
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after restart: %v", err)
	}
	if err := client.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET k after restart = %v, want redis.Nil (no persistence)", err)
	}
}

func TestRedisStartErrorIncludesLog(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, err = StartRedis(startCtx(t), RedisOptions{Dir: t.TempDir(), Port: busy.Addr().(*net.TCPAddr).Port})
	if err == nil {
		t.Fatal("StartRedis on a busy port succeeded")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "Address already in use") {
		t.Errorf("error does not quote the server log:\n%v", err)
	}
}

func TestRabbitMQ(t *testing.T) {
	t.Parallel()
	start := time.Now()
	r, err := StartRabbitMQ(startCtx(t), RabbitMQOptions{Dir: instanceDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rabbitmq: first start took %v", time.Since(start))
	t.Cleanup(func() {
		if err := r.Close(stopCtx(t)); err != nil {
			t.Error(err)
		}
	})

	const queue = "localenv-test"
	conn, ch := amqpChannel(t, r.URL())
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, queue, "hello")
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-deliveries:
		if string(d.Body) != "hello" {
			t.Fatalf("consumed %q, want hello", d.Body)
		}
		if err := d.Ack(false); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery within 10s")
	}
	publish(t, ch, queue, "persisted")
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))

	// Outage: the broker goes, epmd and the data stay.
	broker, epmd := r.brokerProc, r.epmdProc
	start = time.Now()
	if err := r.Stop(stopCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Logf("rabbitmq: stop took %v", time.Since(start))
	requireGone(t, broker)
	requireRunning(t, epmd)
	requirePortClosed(t, r.Port())
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Error("client connection not closed by the broker stop")
	}

	start = time.Now()
	if err := r.Start(startCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Logf("rabbitmq: restart took %v", time.Since(start))
	if r.epmdProc != epmd {
		t.Error("Start replaced a running epmd")
	}
	_, ch = amqpChannel(t, r.URL())
	msg, ok, err := ch.Get(queue, true)
	if err != nil || !ok || string(msg.Body) != "persisted" {
		t.Fatalf("after restart Get = %q, %v, %v; want the persistent message", msg.Body, ok, err)
	}

	// A crash: what the broker confirmed survives SIGKILL.
	publish(t, ch, queue, "confirmed")
	broker = r.brokerProc
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	requireGone(t, broker)
	requirePortClosed(t, r.Port())
	if err := r.Start(startCtx(t)); err != nil {
		t.Fatal(err)
	}
	_, ch = amqpChannel(t, r.URL())
	msg, ok, err = ch.Get(queue, true)
	if err != nil || !ok || string(msg.Body) != "confirmed" {
		t.Fatalf("after a kill Get = %q, %v, %v; want the confirmed message", msg.Body, ok, err)
	}

	broker = r.brokerProc
	if err := r.Close(stopCtx(t)); err != nil {
		t.Fatal(err)
	}
	requireGone(t, broker)
	requireGone(t, epmd)
	requirePortClosed(t, r.Port())
	requirePortClosed(t, r.epmdPort)
	requirePortClosed(t, r.distPort)
}

func TestRabbitMQManagement(t *testing.T) {
	t.Parallel()
	mgmt, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, err := StartRabbitMQ(startCtx(t), RabbitMQOptions{Dir: instanceDir(t), ManagementPort: mgmt})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rabbitmq: first start with management took %v", time.Since(start))
	t.Cleanup(func() {
		if err := r.Close(stopCtx(t)); err != nil {
			t.Error(err)
		}
	})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, r.ManagementURL()+"api/overview", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var overview struct {
		Version string `json:"rabbitmq_version"`
		Node    string `json:"node"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&overview); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET api/overview: status %s, decode error %v", resp.Status, err)
	}
	if overview.Node != r.node || overview.Version == "" {
		t.Errorf("overview = %+v, want node %s", overview, r.node)
	}
}

func amqpChannel(t *testing.T, url string) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	// Confirms, so a message is known to be stored before the broker is
	// stopped.
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	return conn, ch
}

func publish(t *testing.T, ch *amqp.Channel, queue, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	confirm, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, amqp.Publishing{
		DeliveryMode: amqp.Persistent,
		Body:         []byte(body),
	})
	if err != nil {
		t.Fatal(err)
	}
	if acked, err := confirm.WaitContext(ctx); err != nil || !acked {
		t.Fatalf("publish %q: acked=%v err=%v", body, acked, err)
	}
}
