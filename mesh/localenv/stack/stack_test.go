package stack

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestStopUndoesStepsInReverseOrder(t *testing.T) {
	s, err := New(Config{Root: ".", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, name := range []string{"servers", "services", "ingress"} {
		s.OnStop(name, func(context.Context) error {
			order = append(order, name)
			if name == "services" {
				return errors.New("boom")
			}
			return nil
		})
	}
	err = s.Stop(t.Context())
	if want := []string{"ingress", "services", "servers"}; !slices.Equal(order, want) {
		t.Errorf("stopped %v, want %v", order, want)
	}
	if err == nil || !strings.Contains(err.Error(), "stop services: boom") {
		t.Errorf("Stop error %v, want the failing step named", err)
	}
	// Every step ran once: a second Stop has nothing left to do.
	order = nil
	if err := s.Stop(t.Context()); err != nil || len(order) != 0 {
		t.Errorf("second Stop: %v, ran %v", err, order)
	}
}

func TestStopReportsAProcessLeftRunning(t *testing.T) {
	s, err := New(Config{Root: ".", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	s.Started(cmd.Process.Pid)
	if err := s.Stop(t.Context()); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("Stop with a process left: %v, want it reported", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if err := s.Stop(t.Context()); err != nil {
		t.Fatalf("Stop once the process is gone: %v", err)
	}
}
