package main

import (
	"net"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseListeningKeepsListenersOnly(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:D2F0 0100007F:1388 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 20 4 30 10 -1
`
	got := parseListening([]byte(table))
	want := map[int][]string{5000: {"1111"}, 8081: {"2222"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseListening (-want +got):\n%s", diff)
	}
}

func TestParseStatCountsChildrenAndSurvivesSpacesInTheName(t *testing.T) {
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
	line := "4242 (postgres: bench (x)) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 1 0 100 0 0\n"
	got, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if got.ppid != 17 || got.ticks != 350 {
		t.Errorf("parseStat = %+v, want ppid 17 and 350 ticks", got)
	}
	if _, err := parseStat([]byte("1 (short) S 0")); err == nil {
		t.Error("a short stat line was accepted")
	}
}

func TestCPUPer1000(t *testing.T) {
	before := cpuSample{"users": 100, "envoy": 50, "restarted": 900}
	after := cpuSample{"users": 150, "envoy": 50, "restarted": 10, "new": 5}
	got := cpuPer1000(before, after, 2000)
	// users: 50 ticks = 0.5 s over 2000 requests = 0.25 s per 1000.
	want := map[string]float64{"users": 0.25, "envoy": 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cpuPer1000 (-want +got):\n%s", diff)
	}
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\tusers\nVmRSS:\t   20480 kB\nRssAnon:\t   12000 kB\n"
	if got := parseStatusKB([]byte(status), "VmRSS:"); got != 20480 {
		t.Errorf("VmRSS = %d", got)
	}
	if got := parseStatusKB([]byte(status), "VmSwap:"); got != 0 {
		t.Errorf("missing key = %d", got)
	}
}

// The port lookup against this machine's /proc: a listener this test opens
// is found as this process.
func TestFindProcessesFindsAListenerByPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	found, missing, err := findProcesses([]processPort{{"me", port}, {"nobody", 1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0] != (watched{Name: "me", PID: os.Getpid()}) {
		t.Errorf("found %+v, want this process", found)
	}
	if len(missing) != 1 || !strings.Contains(missing[0], "nobody") {
		t.Errorf("missing %q", missing)
	}
	cpu, err := sampleCPU(found)
	if err != nil || len(cpu) != 1 {
		t.Errorf("sampleCPU = %v, %v", cpu, err)
	}
	rss, err := sampleRSS(found)
	if err != nil || rss["me"] <= 0 {
		t.Errorf("sampleRSS = %v, %v", rss, err)
	}
}
