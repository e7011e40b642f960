// Package golden compares the control plane's stage outputs with files
// under testdata/out, and rewrites them when a test runs with -update. It
// is shared by the irbuild and translate tests so both stages are pinned
// the same way: one input per feature, small outputs, one flag.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// update is registered in every test binary that imports this package:
//
//	go test ./edge/controlplane/irbuild ./edge/controlplane/translate -update
//
// rewrites every golden file (packages without golden files do not know
// the flag, so name these two).
var update = flag.Bool("update", false, "rewrite testdata/out from the current output and remove stale files")

// Updating reports whether the test run rewrites the golden files.
func Updating() bool { return *update }

// Cases lists the inputs under dir (*.yaml) by case name, sorted.
func Cases(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden inputs in %s: %v", dir, err)
	}
	names := make([]string, 0, len(paths))
	for _, p := range paths {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".yaml"))
	}
	slices.Sort(names)
	return names
}

// Compare requires that the file at path holds got, or writes it with -update.
func Compare(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		// Golden files are checked-in sources: the usual permissions.
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil { //nolint:gosec // a source directory
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil { //nolint:gosec // a source file
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs from the output; see it with go test -update and git diff\n--- got:\n%s", path, got)
	}
}

// RequireOnly fails unless the files in dir are exactly the ones written
// (the names in keep); with -update it removes the others, so a renamed
// or removed case leaves nothing stale behind.
func RequireOnly(t *testing.T, dir string, keep []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || slices.Contains(keep, e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if !*update {
			t.Errorf("%s is no case's output (go test -update removes it)", path)
			continue
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// YAML renders v as YAML.
func YAML(t *testing.T, v any) []byte {
	t.Helper()
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Errors renders an error's messages one per line, sorted, so a golden
// file of an invalid input names every reason and does not depend on the
// order in which they were found. Messages are separated by newlines
// (errors.Join) or, within a document's validation error, by "; ".
func Errors(err error) []byte {
	var lines []string
	for _, line := range strings.Split(err.Error(), "\n") {
		lines = append(lines, strings.Split(line, "; ")...)
	}
	slices.Sort(lines)
	return []byte(strings.Join(lines, "\n") + "\n")
}
