package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Phases of the supervisor, as `up` and `status` read them.
const (
	phaseStarting = "starting"
	phaseReady    = "ready"
	phaseFailed   = "failed"
	phaseStopping = "stopping"
)

type componentState struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	URL  string `json:"url"`
	// Health, when set, is the URL `status` GETs: 200 means healthy.
	Health string `json:"health,omitempty"`
	Log    string `json:"log"`
}

type stackState struct {
	Phase      string           `json:"phase"`
	Error      string           `json:"error,omitempty"`
	Updated    time.Time        `json:"updated"`
	Components []componentState `json:"components"`
}

// writeState replaces the state file atomically, so a reader never sees
// half of it.
func writeState(l layout, s stackState) error {
	s.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := l.stateFile() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, l.stateFile())
}

func readState(l layout) (stackState, error) {
	var s stackState
	b, err := os.ReadFile(l.stateFile())
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

// supervisorPID returns the pid of a live supervisor, or 0.
func supervisorPID(l layout) int {
	b, err := os.ReadFile(l.PIDFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || !alive(pid) {
		return 0
	}
	// A recycled pid would not be running our binary.
	exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
	if err != nil || !strings.Contains(filepath.Base(strings.TrimSuffix(exe, " (deleted)")), "devstack") {
		return 0
	}
	return pid
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
