package contract_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// schemathesisBin is where .ci/install-schemathesis.sh (make deps) puts
// the pinned schemathesis command.
const schemathesisBin = ".cache/venv/schemathesis/bin/st"

// runTimeout bounds the schemathesis run; its own settings
// (schemathesis.toml) keep it to a few minutes on two cores.
const runTimeout = 12 * time.Minute

// TestSchemathesis runs every phase of schemathesis through the ingress
// against the merged document the ingress serves, and fails on any
// failure or error it reports. It calls as an ordinary user first and as
// the bootstrap admin where the user is refused (schemathesis moves an
// operation on to the next identity of the auth file when one is
// refused), so that every operation, admin-only ones included, is really
// exercised; the two identities are also the peers of its object-level
// authorization check.
func TestSchemathesis(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	st := filepath.Join(root, schemathesisBin)
	if _, err := os.Stat(st); err != nil {
		t.Fatalf("schemathesis is not installed (%v): run make deps", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()

	adminToken, err := login(ctx, sys.adminEmail, sys.adminPassword)
	if err != nil {
		t.Fatal(err)
	}
	email, password, err := register(ctx, "contract")
	if err != nil {
		t.Fatal(err)
	}
	userToken, err := login(ctx, email, password)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	auth, err := writeIdentities(dir, userToken, adminToken)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--config-file", "schemathesis.toml",
		"run", sys.ingressURL + "/openapi.json",
		"--phases", "examples,coverage,fuzzing,stateful",
		"--auth-wfc", auth,
		"--report", "junit", "--report-dir", dir,
	}
	// More settings for one run, e.g. CONTRACT_SCHEMATHESIS_ARGS='--max-examples 200 --seed 1'.
	args = append(args, strings.Fields(os.Getenv("CONTRACT_SCHEMATHESIS_ARGS"))...)
	cmd := exec.CommandContext(ctx, st, args...)
	cmd.Dir = "."
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	// schemathesis's own summary is the report: always print it.
	t.Logf("st run %s/openapi.json:\n%s", sys.ingressURL, out)
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		t.Fatalf("schemathesis reports failures (exit %d); the summary above lists them", exit.ExitCode())
	case err != nil:
		t.Fatalf("schemathesis did not run: %v", err)
	}
}

// writeIdentities writes a Web Fuzzing Commons auth file (schemathesis
// --auth-wfc) with two bearer-token identities, the user first, and
// returns its path.
func writeIdentities(dir, userToken, adminToken string) (string, error) {
	type header struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	type identity struct {
		Name         string   `json:"name"`
		FixedHeaders []header `json:"fixedHeaders"`
	}
	var doc struct {
		SchemaVersion string     `json:"schemaVersion"`
		Auth          []identity `json:"auth"`
	}
	doc.SchemaVersion = "0.1.0"
	for _, id := range []struct{ name, token string }{{"user", userToken}, {"admin", adminToken}} {
		doc.Auth = append(doc.Auth, identity{Name: id.name, FixedHeaders: []header{{"Authorization", "Bearer " + id.token}}})
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "identities.json")
	return path, os.WriteFile(path, raw, 0o600)
}
