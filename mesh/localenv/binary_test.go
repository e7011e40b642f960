package localenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBinaryEnv(t *testing.T) {
	for name, want := range map[string]string{
		"consul":        "PORTICO_CONSUL_BIN",
		"golangci-lint": "PORTICO_GOLANGCI_LINT_BIN",
		"envoy":         "PORTICO_ENVOY_BIN",
	} {
		if got := BinaryEnv(name); got != want {
			t.Errorf("BinaryEnv(%q) = %q, want %q", name, got, want)
		}
	}
}

// fakeRepo makes a directory with a go.mod and an executable
// .cache/bin/<name>, and runs the test from its subdirectory a/b.
func fakeRepo(t *testing.T, name string) (root, bin string) {
	t.Helper()
	root = t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module fake\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(root, ".cache", "bin", name)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(sub)
	return root, bin
}

func TestBinaryFindsRepoCache(t *testing.T) {
	const name = "portico-fake-tool"
	t.Setenv(BinaryEnv(name), "")
	_, bin := fakeRepo(t, name)
	got, err := Binary(name)
	if err != nil {
		t.Fatal(err)
	}
	if got != bin {
		t.Errorf("Binary = %q, want %q", got, bin)
	}
}

func TestBinaryEnvOverride(t *testing.T) {
	const name = "portico-fake-tool"
	fakeRepo(t, name)
	other := filepath.Join(t.TempDir(), "mine")
	if err := os.WriteFile(other, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(BinaryEnv(name), other)
	if got, err := Binary(name); err != nil || got != other {
		t.Errorf("Binary = %q, %v; want %q from %s", got, err, other, BinaryEnv(name))
	}

	// A wrong override is an error, not a silent fallback.
	notExec := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(BinaryEnv(name), notExec)
	if _, err := Binary(name); err == nil || !strings.Contains(err.Error(), "not executable") {
		t.Errorf("Binary with a non-executable override = %v, want an error", err)
	}
}

func TestBinaryFallsBackToPath(t *testing.T) {
	t.Setenv(BinaryEnv("sh"), "")
	t.Chdir(t.TempDir())
	got, err := Binary("sh")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(got) != "sh" {
		t.Errorf("Binary(sh) = %q", got)
	}
}

func TestBinaryMissing(t *testing.T) {
	const name = "portico-no-such-tool"
	t.Setenv(BinaryEnv(name), "")
	_, err := Binary(name)
	if err == nil {
		t.Fatal("Binary found a tool that does not exist")
	}
	for _, want := range []string{"make deps", BinaryEnv(name), filepath.Join(".cache", "bin")} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
