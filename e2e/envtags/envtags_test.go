package envtags_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/portico-mesh/portico/e2e/envtags"
)

// TestProgramFollowsTheModulesImports: the users binary reads
// DATABASE_URL through services/platform/service, a package it imports,
// and its own settings; tags of other modules are not its.
func TestProgramFollowsTheModulesImports(t *testing.T) {
	names, err := envtags.Program("../..", "./services/cmd/users")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DATABASE_URL", "HTTP_ADDR", "CONSUL_HTTP_ADDR"} {
		if !names[want] {
			t.Errorf("users: %s missing from %v", want, names)
		}
	}
	if _, err := envtags.Program("../..", "./no/such/package"); err == nil {
		t.Error("a package that does not exist gave no error")
	}
}

// TestTreeReadsTheKeyAndSkipsTests: only the named key, first element,
// below dir, never from _test.go files.
func TestTreeReadsTheKeyAndSkipsTests(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.go", "package a\ntype C struct {\n\tA string `envconfig:\"A_NAME\" default:\"x\"`\n\tB string `env:\"B_NAME,required\"`\n}\n")
	write("sub/b.go", "package b\ntype C struct{ D string `envconfig:\"D_NAME,optional\"` }\n")
	write("a_test.go", "package a\ntype T struct{ E string `envconfig:\"E_NAME\"` }\n")
	names, err := envtags.Tree(dir, "envconfig")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 || !names["A_NAME"] || !names["D_NAME"] {
		t.Errorf("names %v, want A_NAME and D_NAME", names)
	}
	write("broken.go", "package a\ntype X struct{\n")
	if _, err := envtags.Tree(dir, "env"); err == nil {
		t.Error("an unparsable file gave no error")
	}
}
