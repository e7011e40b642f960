package compose

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
)

const modulePath = "github.com/portico-mesh/portico"

// envNames returns every variable named by an `env:"NAME"` struct tag
// (caarlos0/env) in the non-test Go files of the package in dir and of
// every package of this module it imports, directly or not: the variables
// the binary built from dir reads.
func envNames(root, dir string) (map[string]bool, error) {
	names := map[string]bool{}
	seen := map[string]bool{}
	var visit func(dir string) error
	visit = func(dir string) error {
		if seen[dir] {
			return nil
		}
		seen[dir] = true
		imports, err := scanPackage(dir, names)
		if err != nil {
			return err
		}
		for _, imp := range imports {
			if rest, ok := strings.CutPrefix(imp, modulePath+"/"); ok {
				if err := visit(filepath.Join(root, filepath.FromSlash(rest))); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := visit(dir); err != nil {
		return nil, err
	}
	return names, nil
}

// scanPackage adds the env tags of dir's non-test files to names and
// returns their imports.
func scanPackage(dir string, names map[string]bool) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var imports []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return nil, err
			}
			imports = append(imports, path)
		}
		var tagErr error
		ast.Inspect(f, func(node ast.Node) bool {
			field, ok := node.(*ast.Field)
			if !ok || field.Tag == nil {
				return true
			}
			raw, err := strconv.Unquote(field.Tag.Value)
			if err != nil {
				tagErr = fmt.Errorf("%s: tag %s: %w", fset.Position(field.Pos()), field.Tag.Value, err)
				return false
			}
			if env, ok := reflect.StructTag(raw).Lookup("env"); ok {
				if name, _, _ := strings.Cut(env, ","); name != "" {
					names[name] = true
				}
			}
			return true
		})
		if tagErr != nil {
			return nil, tagErr
		}
	}
	return imports, nil
}
