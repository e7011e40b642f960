package localenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Binary returns the path of a pinned tool that `make deps` installs
// (consul, envoy, ratelimit, ...). It looks, in order, at
//
//  1. the environment variable PORTICO_<NAME>_BIN (NAME upper-cased, '-'
//     and '.' turned into '_'), which must name an executable;
//  2. <repo>/.cache/bin/<name>, where <repo> is the nearest directory with a
//     go.mod above the working directory, or else above this source file;
//  3. <name> on PATH.
//
// The cache comes before PATH because the tests depend on the pinned
// versions (for example the Envoy that Consul is told to accept), not on
// whatever a developer happens to have installed.
func Binary(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, filepath.Separator) {
		return "", fmt.Errorf("find binary: invalid name %q", name)
	}
	envVar := BinaryEnv(name)
	if p := os.Getenv(envVar); p != "" {
		if err := executable(p); err != nil {
			return "", fmt.Errorf("find %s: %s=%s: %w", name, envVar, p, err)
		}
		return p, nil
	}
	var cacheDirs []string
	for _, root := range repoRoots() {
		dir := filepath.Join(root, ".cache", "bin")
		cacheDirs = append(cacheDirs, dir)
		p := filepath.Join(dir, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	where := "PATH"
	if len(cacheDirs) > 0 {
		where = strings.Join(cacheDirs, ", ") + " or PATH"
	}
	return "", fmt.Errorf("find %s: not in %s: run `make deps` to install the pinned version, or set %s", name, where, envVar)
}

// BinaryEnv returns the environment variable that overrides Binary(name).
func BinaryEnv(name string) string {
	r := strings.NewReplacer("-", "_", ".", "_")
	return "PORTICO_" + strings.ToUpper(r.Replace(name)) + "_BIN"
}

// executable reports why path is not a regular file with an execute bit.
func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not executable")
	}
	return nil
}

// repoRoots returns the candidate repository roots, without duplicates:
// the one above the working directory (tests run in their package
// directory, the dev runner in the repository) and the one above this
// source file (a binary run from elsewhere on the machine that built it).
func repoRoots() []string {
	var roots []string
	add := func(start string) {
		if root, ok := findGoMod(start); ok {
			for _, r := range roots {
				if r == root {
					return
				}
			}
			roots = append(roots, root)
		}
	}
	if wd, err := os.Getwd(); err == nil {
		add(wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		add(filepath.Dir(file))
	}
	return roots
}

// RepoRoot finds the repository from the working directory (the nearest
// directory above it holding a go.mod), so the developer commands work
// from any subfolder.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, ok := findGoMod(wd)
	if !ok {
		return "", errors.New("not inside the Portico repository (no go.mod found)")
	}
	return root, nil
}

// findGoMod walks up from dir to the first directory holding a go.mod.
func findGoMod(dir string) (string, bool) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}
