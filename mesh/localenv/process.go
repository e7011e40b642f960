package localenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Command describes a server process for StartProcess.
type Command struct {
	// Name is a short label ("postgres", "redis") used in errors.
	Name string
	// Path is the executable; Args excludes argv[0].
	Path string
	Args []string
	// Env is the complete environment; nil inherits the current one.
	Env []string
	// Dir is the working directory; empty means the current one.
	Dir string
	// LogPath receives stdout and stderr, appended, so a restarted server
	// keeps the history of earlier runs in the same file.
	LogPath string
	// Credential, when set, runs the process as another user (PostgreSQL
	// refuses to run as root).
	Credential *syscall.Credential
	// StopSignal asks the server to shut down; zero means SIGTERM. It is
	// also the parent-death signal, so a server orphaned by a crashed test
	// binary shuts down the same way as on Stop.
	StopSignal syscall.Signal
}

// Process is a started server process, leader of its own process group.
//
// One goroutine per Process waits for the exit; it ends when the process
// ends, which Stop guarantees.
type Process struct {
	name       string
	pid        int
	logPath    string
	stopSignal syscall.Signal

	// exited is canceled once the process has exited and been reaped. A
	// context rather than a bare channel, so readiness probes can derive
	// from it and give up the moment the server dies.
	exited context.Context
	err    error // exit status from Wait, written before exited is canceled
}

// logMarker starts every run in a log file, so that LogTail can show only the
// output of the current run of a restarted server.
const logMarker = "=== localenv: "

// killGrace bounds how long Stop waits after SIGKILL. A process that
// survives SIGKILL this long is stuck in the kernel and waiting longer would
// only hang the caller.
const killGrace = 10 * time.Second

// StartProcess starts c in a new process group and returns without waiting
// for it to become ready.
func StartProcess(c Command) (*Process, error) {
	if c.LogPath == "" {
		return nil, fmt.Errorf("start %s: Command.LogPath is empty", c.Name)
	}
	stop := c.StopSignal
	if stop == 0 {
		stop = syscall.SIGTERM
	}
	logFile, err := os.OpenFile(c.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	// The child gets its own copy of the descriptor; ours is only needed
	// until Start returns. Passing an *os.File (not an io.Writer) means no
	// copying goroutines exist in this process.
	defer logFile.Close()
	fmt.Fprintf(logFile, "\n%s%s %s %s\n", logMarker, time.Now().Format(time.RFC3339Nano), c.Path, strings.Join(c.Args, " "))

	cmd := exec.Command(c.Path, c.Args...)
	cmd.Env = c.Env
	cmd.Dir = c.Dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own group: Stop signals the server and every helper it forked
		// (postgres backends, erl_child_setup, ...) without touching us.
		Setpgid: true,
		// The kernel sends this when the thread that forked the child
		// exits. Go only retires threads that a goroutine left locked,
		// which this package never does, so in practice it fires when the
		// test binary or dev runner dies (go.dev/issue/27505).
		Pdeathsig:  stop,
		Credential: c.Credential,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	exited, markExited := context.WithCancel(context.Background())
	p := &Process{
		name:       c.Name,
		pid:        cmd.Process.Pid,
		logPath:    c.LogPath,
		stopSignal: stop,
		exited:     exited,
	}
	go func() {
		p.err = cmd.Wait()
		markExited()
	}()
	return p, nil
}

// Pid returns the process id, which is also its process group id.
func (p *Process) Pid() int { return p.pid }

// LogPath returns the file that receives the process output.
func (p *Process) LogPath() string { return p.logPath }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.exited.Done() }

// running reports whether p is started and has not exited.
func running(p *Process) bool {
	if p == nil {
		return false
	}
	select {
	case <-p.Done():
		return false
	default:
		return true
	}
}

// Err returns the exit status once Done is closed, and nil before.
func (p *Process) Err() error {
	select {
	case <-p.Done():
		return p.err
	default:
		return nil
	}
}

// Stop sends the stop signal to the whole process group, waits for the
// leader to exit and then for the rest of the group. When ctx ends first it
// sends SIGKILL to the group, waits for the exit, and reports that the
// graceful stop timed out; with a ctx that never ends Stop waits for the
// graceful exit however long it takes. When Stop returns without error
// nothing of the group runs any more, so ports and files are free.
//
// Stopping a process that already exited does nothing; in particular its
// group is not swept, because after a while its id may name another group.
func (p *Process) Stop(ctx context.Context) error {
	select {
	case <-p.Done():
		return nil
	default:
	}
	// Signal the group, not just the leader: helpers such as the Erlang
	// VM under the rabbitmq-server script must stop too. Done was open a
	// moment ago, so the group is still ours; should the leader be reaped
	// in between, its group is empty and kill reports ESRCH.
	if err := syscall.Kill(-p.pid, p.stopSignal); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s (pid %d): %w", p.name, p.pid, err)
	}
	var forced error
	select {
	case <-p.Done():
	case <-ctx.Done():
		if err := syscall.Kill(-p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill %s (pid %d): %w", p.name, p.pid, err)
		}
		timer := time.NewTimer(killGrace)
		defer timer.Stop()
		select {
		case <-p.Done():
		case <-timer.C:
			return fmt.Errorf("stop %s (pid %d): still running %v after SIGKILL", p.name, p.pid, killGrace)
		}
		forced = fmt.Errorf("stop %s (pid %d): no graceful exit (%w), killed", p.name, p.pid, context.Cause(ctx))
	}
	return errors.Join(forced, p.awaitGroup())
}

// Kill sends SIGKILL to the whole process group, as a crash would end
// the server (no shutdown, no deregistration, no drain), and waits for
// the group to be gone. Killing a process that already exited does
// nothing. Fault tests use it; Stop is the ordinary way to end a server.
func (p *Process) Kill() error {
	select {
	case <-p.Done():
		return nil
	default:
	}
	if err := syscall.Kill(-p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", p.name, p.pid, err)
	}
	timer := time.NewTimer(killGrace)
	defer timer.Stop()
	select {
	case <-p.Done():
	case <-timer.C:
		return fmt.Errorf("kill %s (pid %d): still running %v after SIGKILL", p.name, p.pid, killGrace)
	}
	return p.awaitGroup()
}

// groupGrace is how long the rest of a group may outlive its leader before
// it is killed. Helpers (erl_child_setup, inet_gethost) exit within
// milliseconds of the process they serve.
const groupGrace = 2 * time.Second

// awaitGroup waits, after the leader exited, until no live process is left
// in its group, killing stragglers after groupGrace. The group id cannot
// be handed to a new group while members exist, and Linux would have to
// cycle through every pid within these seconds to reuse it once empty.
func (p *Process) awaitGroup() error {
	deadline := time.Now().Add(groupGrace)
	killed := false
	for {
		members, err := groupMembers(p.pid)
		if err != nil || len(members) == 0 {
			return err
		}
		if time.Now().After(deadline) {
			if killed {
				return fmt.Errorf("stop %s: processes %v of its group still run after SIGKILL", p.name, members)
			}
			if err := syscall.Kill(-p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("kill the group of %s (pid %d): %w", p.name, p.pid, err)
			}
			killed = true
			deadline = time.Now().Add(killGrace)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// groupMembers returns the live processes in process group pgid. Zombies
// do not count: they run nothing and hold no ports or files, and whether
// they are reaped is up to init, not us.
func groupMembers(pgid int) ([]int, error) {
	// Fast path: an empty group is the common case.
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return nil, nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readProcStat(pid); ok && st.pgrp == pgid && st.state != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// procStat holds the fields of /proc/<pid>/stat this package needs.
type procStat struct {
	state string
	ppid  int
	pgrp  int
}

// readProcStat reads /proc/<pid>/stat; ok is false if pid does not exist.
func readProcStat(pid int) (st procStat, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return st, false
	}
	// The command name in parentheses may contain spaces and parentheses;
	// the fields after the last ')' are: state ppid pgrp ...
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return st, false
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 3 {
		return st, false
	}
	st.state = fields[0]
	st.ppid, _ = strconv.Atoi(fields[1])
	st.pgrp, _ = strconv.Atoi(fields[2])
	return st, true
}

// LogTail returns up to the last n lines the process wrote in its current
// run, for error messages.
func (p *Process) LogTail(n int) string {
	return logTail(p.logPath, n)
}

// logTail reads the end of path and returns up to n lines after the last
// logMarker. Errors are returned as text: the tail only decorates another
// error.
func logTail(path string, n int) string {
	const maxRead = 64 << 10
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > maxRead {
		if _, err := f.Seek(-maxRead, io.SeekEnd); err != nil {
			return fmt.Sprintf("(log %s unreadable: %v)", path, err)
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(log %s unreadable: %v)", path, err)
	}
	if i := bytes.LastIndex(b, []byte(logMarker)); i >= 0 {
		if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
			b = b[i+j+1:]
		}
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startError wraps err with the tail of the server log, the first thing
// anyone needs to see when a server does not come up.
func startError(p *Process, err error) error {
	return fmt.Errorf("%w\n--- last lines of %s ---\n%s\n---", err, p.LogPath(), p.LogTail(logTailLines))
}

// logTailLines is how much of a server log a start error carries. A failed
// RabbitMQ boot states the cause first and then prints about 50 lines of
// Erlang crash report, so a short tail would show only the report.
const logTailLines = 80
