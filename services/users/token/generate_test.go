package token

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLoadOrGenerateCreatesKeyOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "keys")

	kr, generated, err := LoadOrGenerate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !generated {
		t.Error("generated = false on an empty directory")
	}

	if runtime.GOOS != "windows" {
		assertMode(t, dir, 0o700)
	}
	names := dirNames(t, dir)
	if len(names) != 1 || !regexp.MustCompile(`^\d{8}T\d{6}Z\.pem$`).MatchString(names[0]) {
		t.Fatalf("directory holds %v, want one timestamp-named key (no lock or temp files left)", names)
	}
	if runtime.GOOS != "windows" {
		assertMode(t, filepath.Join(dir, names[0]), 0o600)
	}

	again, generated, err := LoadOrGenerate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if generated {
		t.Error("generated = true on the second call")
	}
	if again.SigningKID() != kr.SigningKID() {
		t.Errorf("second call signs with %s, first with %s", again.SigningKID(), kr.SigningKID())
	}
	// Production loading sees the same key.
	loaded, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.SigningKID() != kr.SigningKID() {
		t.Errorf("LoadKeyring signs with %s, LoadOrGenerate with %s", loaded.SigningKID(), kr.SigningKID())
	}
}

func TestLoadOrGenerateNamesKeyByUTCTime(t *testing.T) {
	dir := t.TempDir()
	opt := testGenerateOptions()
	opt.now = fixedClock(time.Date(2026, 11, 25, 7, 0, 0, 0, time.FixedZone("CET", 3600)))
	if _, _, err := loadOrGenerate(dir, opt); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, dir); len(names) != 1 || names[0] != "20261125T060000Z.pem" {
		t.Errorf("directory holds %v, want [20261125T060000Z.pem]", names)
	}
}

func TestLoadOrGenerateKeepsExistingKey(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	writePrivate(t, dir, "20250101T000000Z.pem", key)

	kr, generated, err := LoadOrGenerate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if generated || kr.SigningKID() != Thumbprint(pubOf(key)) {
		t.Errorf("generated=%v kid=%s, want the existing key %s", generated, kr.SigningKID(), Thumbprint(pubOf(key)))
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v, want only the existing key", names)
	}
}

// Retired public keys alone cannot sign, so a signing key is added next to
// them and they stay published.
func TestLoadOrGenerateWithOnlyPublicKeys(t *testing.T) {
	dir := t.TempDir()
	retired := pubOf(newKey(t))
	writePublic(t, dir, "20250101T000000Z.pub.pem", retired)

	kr, generated, err := LoadOrGenerate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !generated {
		t.Error("generated = false with only a public key present")
	}
	if _, ok := kr.PublicKey(Thumbprint(retired)); !ok || len(kr.KIDs()) != 2 {
		t.Errorf("KIDs %v, want the new key and the retired one", kr.KIDs())
	}
}

func TestLoadOrGenerateDoesNotPaperOverBrokenKeys(t *testing.T) {
	dir := t.TempDir()
	writeRaw(t, dir, "20250101T000000Z.pem", "not a key")

	if _, _, err := LoadOrGenerate(dir); err == nil || !strings.Contains(err.Error(), "20250101T000000Z.pem") {
		t.Fatalf("err = %v, want an error naming the broken file", err)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v, want no generated key", names)
	}
}

// Several starters race on one empty directory. Each has its own clock, a
// second apart, so without coordination they would write differently named
// keys and each sign with its own. The lock makes exactly one generate and
// all agree on its key.
func TestLoadOrGenerateConcurrent(t *testing.T) {
	const starters = 12
	for round := range 5 {
		dir := filepath.Join(t.TempDir(), "keys")
		var (
			start     = make(chan struct{})
			wg        sync.WaitGroup
			kids      [starters]string
			generated [starters]bool
			errs      [starters]error
		)
		for i := range starters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				opt := testGenerateOptions()
				opt.now = fixedClock(t0.Add(time.Duration(i) * time.Second))
				<-start
				kr, gen, err := loadOrGenerate(dir, opt)
				errs[i], generated[i] = err, gen
				if err == nil {
					kids[i] = kr.SigningKID()
				}
			}()
		}
		close(start)
		wg.Wait()

		var nGenerated int
		for i := range starters {
			if errs[i] != nil {
				t.Fatalf("round %d starter %d: %v", round, i, errs[i])
			}
			if kids[i] != kids[0] {
				t.Errorf("round %d: starter %d signs with %s, starter 0 with %s", round, i, kids[i], kids[0])
			}
			if generated[i] {
				nGenerated++
			}
		}
		if nGenerated != 1 {
			t.Errorf("round %d: %d starters report generating a key, want 1", round, nGenerated)
		}
		if names := dirNames(t, dir); len(names) != 1 || !strings.HasSuffix(names[0], "Z.pem") {
			t.Errorf("round %d: directory holds %v, want exactly one key", round, names)
		}
	}
}

// A starter that finds the lock taken waits for the holder and loads the key
// it wrote.
func TestLoadOrGenerateWaitsForLockHolder(t *testing.T) {
	dir := t.TempDir()
	lock := writeRaw(t, dir, lockName, "pid 0")

	type result struct {
		kr        *Keyring
		generated bool
		err       error
	}
	done := make(chan result, 1)
	waiting := make(chan struct{})
	var once sync.Once
	go func() {
		opt := testGenerateOptions()
		opt.lockWait = 10 * time.Second
		opt.lockBusy = func() { once.Do(func() { close(waiting) }) }
		kr, gen, err := loadOrGenerate(dir, opt)
		done <- result{kr, gen, err}
	}()

	// Once the starter has found the lock taken, act as the other process:
	// publish the key atomically as the real generator does (the waiter
	// keeps scanning the directory), then release the lock.
	select {
	case <-waiting:
	case r := <-done:
		t.Fatalf("returned without waiting for the lock holder: generated=%v err=%v", r.generated, r.err)
	}
	key := newKey(t)
	writePrivate(t, dir, ".staging", key)
	if err := os.Rename(filepath.Join(dir, ".staging"), filepath.Join(dir, "20261125T060000Z.pem")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, lock)); err != nil {
		t.Fatal(err)
	}

	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.generated || r.kr.SigningKID() != Thumbprint(pubOf(key)) {
		t.Errorf("generated=%v kid=%s, want the lock holder's key %s", r.generated, r.kr.SigningKID(), Thumbprint(pubOf(key)))
	}
}

// A lock left behind by a crashed generator is reported, never broken
// silently (breaking it could race with a live holder).
func TestLoadOrGenerateStaleLock(t *testing.T) {
	dir := t.TempDir()
	writeRaw(t, dir, lockName, "pid 0")
	opt := testGenerateOptions()
	opt.lockWait = 100 * time.Millisecond

	_, _, err := loadOrGenerate(dir, opt)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, lockName)) {
		t.Fatalf("err = %v, want an error naming the lock file", err)
	}

	// Once a key exists the lock is irrelevant.
	writePrivate(t, dir, "20261125T060000Z.pem", newKey(t))
	if _, generated, err := loadOrGenerate(dir, opt); err != nil || generated {
		t.Errorf("with a key present: generated=%v err=%v, want the key loaded", generated, err)
	}
}

func TestLoadOrGenerateUnusableDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrGenerate(file); err == nil {
		t.Error("a regular file accepted as key directory")
	}
	if _, _, err := LoadOrGenerate(filepath.Join(file, "sub")); err == nil {
		t.Error("a directory under a regular file accepted")
	}
}

func testGenerateOptions() generateOptions {
	opt := defaultGenerateOptions()
	opt.poll = time.Millisecond
	return opt
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %v, want %v", path, got, want)
	}
}

// Real processes, not goroutines: the lock must work through the file
// system. The test re-runs its own binary as the racing starters.
func TestLoadOrGenerateAcrossProcesses(t *testing.T) {
	const envDir = "TOKEN_TEST_KEYGEN_DIR"
	if dir := os.Getenv(envDir); dir != "" { // child
		kr, generated, err := LoadOrGenerate(dir)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Printf("kid=%s generated=%v\n", kr.SigningKID(), generated)
		os.Exit(0)
	}
	if testing.Short() {
		t.Skip("spawns processes")
	}

	dir := filepath.Join(t.TempDir(), "keys")
	const procs = 4
	cmds := make([]*exec.Cmd, procs)
	outs := make([]*strings.Builder, procs)
	for i := range procs {
		cmds[i] = exec.Command(os.Args[0], "-test.run=^TestLoadOrGenerateAcrossProcesses$")
		cmds[i].Env = append(os.Environ(), envDir+"="+dir)
		outs[i] = &strings.Builder{}
		cmds[i].Stdout, cmds[i].Stderr = outs[i], outs[i]
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	var kids []string
	var nGenerated int
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("process %d: %v\n%s", i, err, outs[i])
		}
		var kid string
		var generated bool
		if _, err := fmt.Sscanf(outs[i].String(), "kid=%s generated=%t", &kid, &generated); err != nil {
			t.Fatalf("process %d output %q: %v", i, outs[i], err)
		}
		kids = append(kids, kid)
		if generated {
			nGenerated++
		}
	}
	for _, kid := range kids {
		if kid != kids[0] {
			t.Errorf("processes disagree on the signing key: %v", kids)
			break
		}
	}
	if nGenerated != 1 {
		t.Errorf("%d processes report generating a key, want 1", nGenerated)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v, want exactly one key", names)
	}
}
