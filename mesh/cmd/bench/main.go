// Command bench measures Portico's request path hop by hop, side by side in
// one run: what `make bench` runs.
//
// It brings up the `make up` stack through devstack's command line (or, with
// -reuse, measures a running one), raises the rate limits through the edge
// configuration document in Consul KV, and drives each path with vegeta's
// open-loop generator in this process: fixed rates, then a time-bounded
// search for the highest rate held with p99 within the target. It prints
// latency, capacity, CPU seconds per 1000 requests and RSS of every process
// of the stack (read from /proc), writes the same as JSON under .run/bench,
// and stops what it started.
//
//	bench [flags]                      run, print, save
//	bench -compare old.json            run, then print old against this run
//	bench -compare old.json new.json   print old against new, run nothing
//
// A fixed-rate step under 99% success fails the run (exit status 1) after
// the report is printed and saved: a broken path must not look fast.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	rates, loginRates []int
	step, probe       time.Duration
	budget            time.Duration
	targetP99         time.Duration
	workers           int
	timeout           time.Duration
	cpuAt             int
	reuse             bool
	outDir            string
	only              []string
	compare           string
	// tracing is "off" (no trace backend, no OTEL_* variables, sampling
	// 0) or the ingress's sampling percent with Jaeger running.
	tracing         string
	samplingPercent float64
}

func parseFlags(args []string) (options, []string, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	rates := fs.String("rates", "250,500,1000", "fixed rates (requests/s) measured on every path but login")
	loginRates := fs.String("login-rates", "5,10,20", "fixed rates for login, which hashes a password per request")
	fs.DurationVar(&o.step, "duration", 5*time.Second, "length of each fixed-rate step")
	fs.DurationVar(&o.probe, "probe", 2*time.Second, "length of each capacity-search probe")
	fs.DurationVar(&o.budget, "search-budget", 20*time.Second, "time bound of the capacity search, per path")
	fs.DurationVar(&o.targetP99, "p99", 10*time.Millisecond, "the p99 a rate must keep to count as held")
	fs.IntVar(&o.workers, "workers", 16, "initial vegeta workers (more start when all are busy: open loop)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.IntVar(&o.cpuAt, "cpu-at", 500, "the CPU table shows each path's step nearest this rate")
	fs.BoolVar(&o.reuse, "reuse", false, "measure the running `make up` stack instead of starting one (left running)")
	fs.StringVar(&o.outDir, "out", ".run/bench", "where results are written, one JSON file per run (relative to the repository)")
	paths := fs.String("paths", "", "comma-separated paths to run (default all; direct always runs, as the baseline)")
	fs.StringVar(&o.compare, "compare", "", "an earlier result to print against this run (or against a second file given as argument)")
	fs.StringVar(&o.tracing, "tracing", "off", "off (no trace backend, no OTEL_* variables, sampling 0), or the ingress's sampling percent (0-100) with Jaeger running as `make up` has it")
	if err := fs.Parse(args); err != nil {
		return o, nil, err
	}
	if o.tracing != "off" {
		p, err := strconv.ParseFloat(o.tracing, 64)
		if err != nil || !(p >= 0 && p <= 100) {
			return o, nil, fmt.Errorf("-tracing: %q is neither off nor a percent from 0 to 100", o.tracing)
		}
		o.samplingPercent = p
	}
	var err error
	if o.rates, err = parseRates(*rates); err != nil {
		return o, nil, fmt.Errorf("-rates: %w", err)
	}
	if o.loginRates, err = parseRates(*loginRates); err != nil {
		return o, nil, fmt.Errorf("-login-rates: %w", err)
	}
	if *paths != "" {
		o.only = append(strings.Split(*paths, ","), baseline)
	}
	if o.step <= 0 || o.probe <= 0 || o.workers <= 0 || o.timeout <= 0 {
		return o, nil, errors.New("-duration, -probe, -workers and -timeout must be positive")
	}
	return o, fs.Args(), nil
}

// parseRates reads "250,500,1000": positive, ascending after sorting.
func parseRates(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive rate", f)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func run(args []string) error {
	o, rest, err := parseFlags(args)
	if err != nil {
		return err
	}
	if o.compare != "" && len(rest) == 1 {
		return compareFiles(o.compare, rest[0])
	}
	if len(rest) > 0 {
		return fmt.Errorf("unexpected arguments %q", rest)
	}
	root, err := localenv.RepoRoot()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	rep, runErr := measure(ctx, root, o)
	if len(rep.Paths) == 0 {
		return runErr
	}
	rep.Print(os.Stdout)
	outDir := o.outDir
	if !filepath.IsAbs(outDir) {
		outDir = filepath.Join(root, outDir)
	}
	saved, err := rep.Save(outDir)
	if err != nil {
		return errors.Join(runErr, fmt.Errorf("save results: %w", err))
	}
	fmt.Printf("\nresults: %s\n", saved)
	if o.compare != "" {
		old, err := LoadReport(o.compare)
		if err != nil {
			return errors.Join(runErr, err)
		}
		fmt.Println()
		Compare(os.Stdout, old, rep)
	}
	if runErr != nil {
		return runErr
	}
	if saturated := rep.Saturated(); len(saturated) > 0 {
		fmt.Printf("\nsaturated (under %.0f%% success above the lowest rate, marked !):\n  %s\n",
			100*minSuccess, strings.Join(saturated, "\n  "))
	}
	if failed := rep.Failures(); len(failed) > 0 {
		return fmt.Errorf("%d paths under %.0f%% success at their lowest rate: broken, not busy:\n  %s",
			len(failed), 100*minSuccess, strings.Join(failed, "\n  "))
	}
	return nil
}

func compareFiles(oldPath, newPath string) error {
	old, err := LoadReport(oldPath)
	if err != nil {
		return err
	}
	cur, err := LoadReport(newPath)
	if err != nil {
		return err
	}
	Compare(os.Stdout, old, cur)
	return nil
}

// phases times the parts of a run and logs each as it ends.
type phases struct{ list []Phase }

func (p *phases) do(name string, f func() error) error {
	begin := time.Now()
	err := f()
	took := time.Since(begin)
	p.list = append(p.list, Phase{Name: name, Seconds: took.Seconds()})
	logf("phase %-34s %6.1fs", name, took.Seconds())
	return err
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// idleSettle is how long the processes rest before their idle RSS is read.
const idleSettle = time.Second

// measure brings the stack up, runs every path and takes the stack down
// again; the report holds whatever was measured before an error.
func measure(ctx context.Context, root string, o options) (rep Report, err error) {
	var ph phases
	rep = Report{
		Started: time.Now().UTC(), Commit: commit(ctx, root), CPUs: runtime.NumCPU(),
		Settings: Settings{
			Rates: o.rates, LoginRates: o.loginRates, StepSecs: o.step.Seconds(), ProbeSecs: o.probe.Seconds(),
			TargetP99: toMillis(o.targetP99), Workers: o.workers, CPUAtRate: o.cpuAt, Tracing: o.tracing,
		},
	}
	defer func() { rep.Phases = ph.list }()

	var st *stack
	err = ph.do("stack up (devstack up, or -reuse)", func() (err error) {
		st, err = bringUp(ctx, root, o.reuse, o.tracing != "off")
		return err
	})
	defer func() {
		if st != nil && st.started {
			err = errors.Join(err, ph.do("stack down (devstack down)", st.down))
		}
	}()
	if err != nil {
		return rep, err
	}

	var f *fixture
	if err = ph.do("bench user, admin and product", func() error {
		email, password, err := adminCredentials(root)
		if err != nil {
			return err
		}
		if f, err = newFixture(ctx, email, password); err != nil {
			return err
		}
		return f.createProduct(ctx)
	}); err != nil {
		return rep, err
	}

	var ec *edgeConfig
	err = ph.do("edge configuration (limits raised)", func() (err error) {
		ec, err = applyBenchConfig(ctx, f, o.samplingPercent)
		return err
	})
	defer func() {
		if restoreErr := ec.restore(); restoreErr != nil {
			err = errors.Join(err, fmt.Errorf("restore the edge configuration: %w", restoreErr))
		}
	}()
	if err != nil {
		return rep, err
	}

	var floor *floorEnvoy
	err = ph.do("control Envoy (router only)", func() (err error) {
		floor, err = startFloorEnvoy(ctx, floorDir(root))
		return err
	})
	defer func() { err = errors.Join(err, floor.stop()) }()
	if err != nil {
		return rep, err
	}

	l := &loader{workers: o.workers, timeout: o.timeout, targetP99: toMillis(o.targetP99), maxRSS: map[string]int64{}}
	var idle map[string]int64
	if err = ph.do("processes and idle RSS", func() error {
		found, missing, err := findProcesses(append(stackProcesses(), floor.process()))
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			logf("not found, left out of CPU and RSS: %s", strings.Join(missing, ", "))
		}
		l.procs = append(found, watched{Name: selfName, PID: os.Getpid()})
		// The fixture's logins just hashed passwords: users gives
		// argon2id's memory back 250 ms after hashing pauses, so idle is
		// read once that has passed, not in the middle of it.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(idleSettle):
		}
		idle, err = sampleRSS(l.procs)
		return err
	}); err != nil {
		return rep, err
	}
	defer func() { rep.Procs = memoryTable(l.procs, idle, l.maxRSS) }()

	for i := range f.paths(o.rates, o.loginRates, floor.URL()) {
		if err := f.freshTokens(ctx); err != nil {
			return rep, err
		}
		p := f.paths(o.rates, o.loginRates, floor.URL())[i]
		if o.only != nil && !slices.Contains(o.only, p.Name) {
			continue
		}
		var res PathResult
		err = ph.do("path "+p.Name, func() (err error) {
			res, err = l.runPath(ctx, p, o.step, o.probe, o.budget, logf)
			return err
		})
		rep.Paths = append(rep.Paths, res)
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func memoryTable(procs []watched, idle, load map[string]int64) []ProcessMemory {
	var out []ProcessMemory
	for _, p := range procs {
		out = append(out, ProcessMemory{Name: p.Name, PIDs: []int{p.PID}, IdleRSSKB: idle[p.Name], LoadRSSKB: load[p.Name]})
	}
	return out
}

// commit names the checked-out revision, if git can tell.
func commit(ctx context.Context, root string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", root, "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
