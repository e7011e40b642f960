// Package envtags finds the environment variables a Go program reads, from
// the struct tags of its configuration (`env:"NAME"` for caarlos0/env,
// `envconfig:"NAME"` for kelseyhightower/envconfig). The deployment checks
// (e2e/compose, nomad) hold the variables they set to these sets, so that
// a renamed or invented variable fails a test instead of being ignored at
// run time.
package envtags

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
)

// Names is a set of variable names.
type Names map[string]bool

// Program returns the `env` tags of the package pkg (an import path, or a
// ./relative one resolved in moduleDir) and of every package of the same
// module it imports, directly or not: a binary's configuration is often
// spread over several (services/platform/service, for one).
func Program(moduleDir, pkg string) (Names, error) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.Dir}}\t{{with .Module}}{{.Main}}{{end}}", pkg)
	cmd.Dir = moduleDir
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return nil, fmt.Errorf("go list -deps %s: %w: %s", pkg, err, exit.Stderr)
		}
		return nil, fmt.Errorf("go list -deps %s: %w", pkg, err)
	}
	names := Names{}
	for line := range strings.Lines(string(out)) {
		dir, main, _ := strings.Cut(strings.TrimSpace(line), "\t")
		if main != "true" {
			continue
		}
		if err := add(dir, false, "env", names); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// Tree returns the tags under key in the non-test Go files under dir and
// its subdirectories.
func Tree(dir, key string) (Names, error) {
	names := Names{}
	return names, add(dir, true, key, names)
}

// add adds to names the first element of every struct field tag under key
// in the non-test Go files of dir (and below it when recursive).
func add(dir string, recursive bool, key string, names Names) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && !recursive {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		var tagErr error
		ast.Inspect(file, func(n ast.Node) bool {
			field, ok := n.(*ast.Field)
			if !ok || field.Tag == nil || tagErr != nil {
				return tagErr == nil
			}
			raw, err := strconv.Unquote(field.Tag.Value)
			if err != nil {
				tagErr = fmt.Errorf("%s: tag %s: %w", fset.Position(field.Pos()), field.Tag.Value, err)
				return false
			}
			if name, _, _ := strings.Cut(reflect.StructTag(raw).Get(key), ","); name != "" {
				names[name] = true
			}
			return true
		})
		return tagErr
	})
}
