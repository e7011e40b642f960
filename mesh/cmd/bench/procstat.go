package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports (the kernel scales to it whatever HZ is).
const clockTicks = 100

// processPort names a process of the stack by a TCP port it listens on: the
// port plan of `make up` (README "Service mesh" and "Operations", nomad/README
// for the edge's upstream listeners), so the benchmark needs nothing from
// devstack but its command line.
type processPort struct {
	Name string
	Port int
}

// stackProcesses lists every process a request may cost, in the order they
// are printed.
func stackProcesses() []processPort {
	return []processPort{
		{"ingress-envoy", 5000},
		{"edge-envoy", 19201}, // its upstream listener to users
		{"edge", 8090},
		{"users-envoy", 21081},
		{"users", 8081},
		{"products-1-envoy", 21082},
		{"products-1", 8082},
		{"products-2-envoy", 21083},
		{"products-2", 8083},
		{"controlplane", 18001},
		{"ratelimit", 18081},
		{"redis", 56379},
		{"postgres", 55432}, // the postmaster; its backends are its children
		{"rabbitmq", 55672},
		{"consul", 8500},
		{"prometheus", 9090},
		{"jaeger", 16686}, // with -tracing other than off
	}
}

// selfName is the load generator, this process.
const selfName = "bench (vegeta)"

// watched is a process found for a processPort.
type watched struct {
	Name string
	PID  int
}

// findProcesses resolves each port to the process listening on it, from
// /proc/net/tcp{,6} (socket inodes in LISTEN state) and /proc/*/fd (which
// process holds the inode). Ports nobody listens on are returned in missing.
func findProcesses(ports []processPort) (found []watched, missing []string, err error) {
	inodes, err := listeningInodes()
	if err != nil {
		return nil, nil, err
	}
	holders, err := socketHolders()
	if err != nil {
		return nil, nil, err
	}
	table, err := readProcTable()
	if err != nil {
		return nil, nil, err
	}
	for _, pp := range ports {
		var candidates []int
		for _, inode := range inodes[pp.Port] {
			candidates = append(candidates, holders[inode]...)
		}
		pid := owner(table, candidates)
		if pid == 0 {
			missing = append(missing, fmt.Sprintf("%s (port %d)", pp.Name, pp.Port))
			continue
		}
		found = append(found, watched{Name: pp.Name, PID: pid})
	}
	return found, missing, nil
}

// owner picks, among the processes holding a listening socket, the one
// whose parent does not hold it too: children may inherit the socket.
func owner(table map[int]procStat, candidates []int) int {
	slices.Sort(candidates)
	for _, c := range candidates {
		if !slices.Contains(candidates, table[c].ppid) {
			return c
		}
	}
	if len(candidates) > 0 {
		return candidates[0]
	}
	return 0
}

// listeningInodes maps each local port in LISTEN state to its socket inodes.
func listeningInodes() (map[int][]string, error) {
	out := map[int][]string{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, err
		}
		for port, inode := range parseListening(b) {
			out[port] = append(out[port], inode...)
		}
	}
	return out, nil
}

// tcpListen is the state code of a listening socket in /proc/net/tcp.
const tcpListen = "0A"

// parseListening reads a /proc/net/tcp table: "sl local rem st ... inode".
func parseListening(table []byte) map[int][]string {
	out := map[int][]string{}
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != tcpListen {
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		port, err := strconv.ParseInt(hexPort, 16, 32)
		if err != nil {
			continue
		}
		out[int(port)] = append(out[int(port)], f[9])
	}
	return out
}

// socketHolders maps socket inodes to the pids holding them open.
func socketHolders() (map[string][]int, error) {
	fds, err := filepath.Glob("/proc/[0-9]*/fd/*")
	if err != nil {
		return nil, err
	}
	out := map[string][]int{}
	for _, fd := range fds {
		link, err := os.Readlink(fd)
		if err != nil {
			continue // the process or fd is gone
		}
		inode, ok := strings.CutPrefix(link, "socket:[")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
		if err != nil {
			continue
		}
		out[strings.TrimSuffix(inode, "]")] = append(out[strings.TrimSuffix(inode, "]")], pid)
	}
	return out, nil
}

// procStat is what the benchmark reads of /proc/<pid>/stat.
type procStat struct {
	ppid int
	// ticks is utime+stime of the process plus cutime+cstime, the times
	// of children it has waited for (PostgreSQL backends that exited).
	ticks uint64
}

// parseStat reads /proc/<pid>/stat. The command name is in parentheses
// and may hold spaces, so fields are counted after the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("malformed stat %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')': state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("short stat %q", b)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, err
	}
	var ticks uint64
	for _, s := range f[11:15] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return procStat{}, err
		}
		ticks += uint64(max(v, 0))
	}
	return procStat{ppid: ppid, ticks: ticks}, nil
}

// readProcTable reads the stat of every process.
func readProcTable() (map[int]procStat, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	out := make(map[int]procStat, len(dirs))
	for _, dir := range dirs {
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		if st, err := parseStat(b); err == nil {
			out[pid] = st
		}
	}
	return out, nil
}

// descendants lists every live descendant of pid.
func descendants(table map[int]procStat, pid int) []int {
	children := map[int][]int{}
	for p, st := range table {
		children[st.ppid] = append(children[st.ppid], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// cpuSample is the CPU ticks of each watched process (with its
// descendants) at one moment.
type cpuSample map[string]uint64

// sampleCPU reads the CPU time of each process and its descendants.
func sampleCPU(procs []watched) (cpuSample, error) {
	table, err := readProcTable()
	if err != nil {
		return nil, err
	}
	out := cpuSample{}
	for _, p := range procs {
		st, ok := table[p.PID]
		if !ok {
			continue // it died; the step's CPU for it is unknown
		}
		ticks := st.ticks
		for _, d := range descendants(table, p.PID) {
			ticks += table[d].ticks
		}
		out[p.Name] = ticks
	}
	return out, nil
}

// cpuPer1000 turns two samples into CPU seconds per 1000 requests.
func cpuPer1000(before, after cpuSample, requests int) map[string]float64 {
	out := map[string]float64{}
	if requests == 0 {
		return out
	}
	for name, a := range after {
		b, ok := before[name]
		if !ok || a < b {
			continue // restarted between the samples
		}
		out[name] = float64(a-b) / clockTicks / float64(requests) * 1000
	}
	return out
}

// rssKB is a process's resident memory: VmRSS of the process plus the
// anonymous resident memory (RssAnon) of its descendants, so PostgreSQL's
// shared buffers count once, not once per backend.
func rssKB(table map[int]procStat, pid int) int64 {
	total := statusKB(pid, "VmRSS:")
	for _, d := range descendants(table, pid) {
		total += statusKB(d, "RssAnon:")
	}
	return total
}

// statusKB reads one "Key:   123 kB" line of /proc/<pid>/status.
func statusKB(pid int, key string) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	return parseStatusKB(b, key)
}

func parseStatusKB(status []byte, key string) int64 {
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			v, _ := strconv.ParseInt(f[0], 10, 64)
			return v
		}
	}
	return 0
}

// sampleRSS reads every process's resident memory in kB.
func sampleRSS(procs []watched) (map[string]int64, error) {
	table, err := readProcTable()
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, p := range procs {
		out[p.Name] = rssKB(table, p.PID)
	}
	return out, nil
}
