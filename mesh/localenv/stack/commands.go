package stack

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
)

// The Go packages of the commands the stack runs, relative to the
// repository root: the one place that names them for devstack and the
// end-to-end suites (the Makefile's BINARIES names them for `make build`).
const (
	UsersCommand        = "./services/cmd/users"
	ProductsCommand     = "./services/cmd/products"
	EdgeCommand         = "./edge/cmd/edge"
	ControlPlaneCommand = "./edge/cmd/controlplane"
)

// Build compiles commands (package paths such as UsersCommand) of the
// checkout at root in one go build, into dir under the last element of
// each path (users, products, edge, controlplane).
func Build(ctx context.Context, root, dir string, commands ...string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("go toolchain not on PATH: %w", err)
	}
	args := append([]string{"build", "-o", filepath.Clean(dir) + string(filepath.Separator)}, commands...)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %v: %w\n%s", commands, err, out)
	}
	return nil
}

// Binary is where Build put command in dir.
func Binary(dir, command string) string { return filepath.Join(dir, filepath.Base(command)) }
