package catalog

import (
	"os"
	"testing"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

// The tests below run against a real Consul dev agent: one shared by the
// package (localenvtest.Consul), or a private one for a test that restarts it.
func TestMain(m *testing.M) {
	os.Exit(localenvtest.Run(m, localenvtest.Consul))
}
