package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

const (
	// lockName serializes key generation between processes (and goroutines)
	// sharing a key directory. The leading dot keeps LoadKeyring away from it.
	lockName = ".keygen.lock"
	// keyNameLayout names generated keys by UTC time, so a key added later by
	// an operator with the same scheme sorts after it and takes over signing.
	keyNameLayout = "20060102T150405Z"
)

// generateOptions are the knobs tests need; LoadOrGenerate uses the defaults.
type generateOptions struct {
	now      func() time.Time // names the key file
	lockWait time.Duration    // how long to wait for another generator
	poll     time.Duration
	// lockBusy, if set, is called each time the lock is found held by
	// another generator, before waiting for it.
	lockBusy func()
}

func defaultGenerateOptions() generateOptions {
	return generateOptions{now: time.Now, lockWait: 10 * time.Second, poll: 20 * time.Millisecond}
}

// LoadOrGenerate is LoadKeyring for development: if dir holds no private key,
// it creates dir (0700) and writes one fresh Ed25519 key named by the UTC time
// (e.g. 20261125T060000Z.pem, mode 0600), then loads the directory. generated
// reports whether this call wrote the key, so the caller can log it (this
// package logs nothing).
//
// Several processes or goroutines may start on the same empty directory at
// once: a lock file (.keygen.lock, created with O_EXCL) lets exactly one of
// them generate; the others wait for it and load the key it wrote, so all end
// up with the same signing key. The key is written to a temp file and then
// hard-linked into place, so no reader ever sees a half-written key and an
// existing file is never overwritten. A lock left by a crashed process makes
// this fail after 10s with an error naming the file to delete.
//
// A directory that has a private key is loaded as is; one with a broken key
// file is an error, never papered over with a new key.
func LoadOrGenerate(dir string) (kr *Keyring, generated bool, err error) {
	return loadOrGenerate(dir, defaultGenerateOptions())
}

func loadOrGenerate(dir string, opt generateOptions) (*Keyring, bool, error) {
	//nolint:gosec // G703: dir is the operator-configured key directory, not request input.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("token: create key directory: %w", err)
	}
	// Every write below goes through root, so it cannot land outside dir.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, false, fmt.Errorf("token: open key directory: %w", err)
	}
	defer root.Close()

	deadline := time.Now().Add(opt.lockWait)
	for {
		kr, err := LoadKeyring(dir)
		if !errors.Is(err, ErrNoSigningKey) {
			return kr, false, err // loaded, or broken beyond "empty"
		}
		kr, generated, err := generateLocked(root, dir, opt.now)
		if err != nil || kr != nil {
			return kr, generated, err
		}
		// Another generator holds the lock: wait for it to finish.
		if opt.lockBusy != nil {
			opt.lockBusy()
		}
		if time.Now().After(deadline) {
			return nil, false, fmt.Errorf("token: waited %v for key generation lock %s; if no other process is starting, delete it",
				opt.lockWait, filepath.Join(dir, lockName))
		}
		time.Sleep(opt.poll)
	}
}

// generateLocked takes the generation lock and, still holding it, writes a
// key if the directory (root, opened at dir) has none yet, then loads the
// directory. It returns a nil keyring and nil error if someone else holds the
// lock.
func generateLocked(root *os.Root, dir string, now func() time.Time) (kr *Keyring, generated bool, err error) {
	lock, err := root.OpenFile(lockName, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("token: create key generation lock: %w", err)
	}
	// Who holds it, for whoever finds a stale one.
	_, _ = fmt.Fprintf(lock, "pid %d at %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	defer func() {
		closeErr := lock.Close()
		if rmErr := root.Remove(lockName); rmErr != nil || closeErr != nil {
			err = errors.Join(err, fmt.Errorf("token: release key generation lock: %w", errors.Join(closeErr, rmErr)))
		}
	}()

	// Someone may have generated between our scan and taking the lock.
	kr, err = LoadKeyring(dir)
	if !errors.Is(err, ErrNoSigningKey) {
		return kr, false, err
	}
	if err := writeNewKey(root, now().UTC().Format(keyNameLayout)+privateKeySuffix); err != nil {
		return nil, false, fmt.Errorf("%w (in %s)", err, dir)
	}
	// Load whatever the directory now holds, not just the key we wrote.
	kr, err = LoadKeyring(dir)
	if err != nil {
		return nil, false, err
	}
	return kr, true, nil
}

// writeNewKey writes a fresh Ed25519 key as name in root, 0600. The key goes
// to an O_EXCL temp file first and is then hard-linked to name: the link
// appears atomically with full content, and fails rather than replace an
// existing file.
func writeNewKey(root *os.Root, name string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("token: generate Ed25519 key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("token: marshal generated key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})

	tmp := "." + name + ".tmp" // dot: never loaded as a key
	if err := writeFileExcl(root, tmp, data); err != nil {
		return err
	}
	defer func() { _ = root.Remove(tmp) }() // after the link, only name remains
	if err := root.Link(tmp, name); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("token: generated key file: %w", err)
		}
		// Filesystems without hard links: we hold the lock and the name is
		// unused (checked just before), so a rename is equally safe here.
		if _, statErr := root.Lstat(name); !errors.Is(statErr, fs.ErrNotExist) {
			return fmt.Errorf("token: generated key file %s already exists", name)
		}
		if err := root.Rename(tmp, name); err != nil {
			return fmt.Errorf("token: generated key file: %w", err)
		}
	}
	return nil
}

func writeFileExcl(root *os.Root, name string, data []byte) (err error) {
	f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("token: create key file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("token: close key file %s: %w", name, cerr)
		}
		if err != nil {
			_ = root.Remove(name) // never leave a truncated key behind
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("token: write key file %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("token: sync key file %s: %w", name, err)
	}
	return nil
}
