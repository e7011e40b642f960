package catalog

import (
	"os"
	"testing"

	"github.com/portico-mesh/portico/e2e/testenv"
)

// The tests below run against a real Consul dev agent: one shared by the
// package (testenv.Consul), or a private one for a test that restarts it.
func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, testenv.Consul))
}
