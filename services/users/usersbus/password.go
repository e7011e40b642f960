package usersbus

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/alexedwards/argon2id"
)

// argonParams are OWASP's minimum recommendation for argon2id (Password
// Storage Cheat Sheet): 19 MiB of memory, 2 iterations, 1 lane; 16-byte
// salt and 32-byte key. Raising them later is safe: every hash records its
// own parameters and is verified with them.
var argonParams = &argon2id.Params{
	Memory:      19 * 1024, // KiB
	Iterations:  2,
	Parallelism: 1,
	SaltLength:  16,
	KeyLength:   32,
}

// PasswordHash is an encoded argon2id hash. It prints, logs and marshals
// as a placeholder, so it cannot leak by accident; only the store reads the
// underlying string.
type PasswordHash string

const redacted = "[redacted]"

func (PasswordHash) String() string                  { return redacted }
func (PasswordHash) GoString() string                { return redacted }
func (PasswordHash) LogValue() slog.Value            { return slog.StringValue(redacted) }
func (PasswordHash) MarshalJSON() ([]byte, error)    { return []byte(`"` + redacted + `"`), nil }
func (PasswordHash) MarshalText() ([]byte, error)    { return []byte(redacted), nil }
func (h PasswordHash) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(redacted)) }

// passwords hashes and verifies passwords. Each argon2id run holds 19 MiB,
// so concurrent runs are bounded to the CPUs: a burst of logins queues
// instead of exhausting memory.
type passwords struct {
	slots chan struct{}
	// dummy is compared against when a login names an unknown email, so
	// that it costs as much as a known one.
	dummy PasswordHash
	// returnMemory runs debug.FreeOSMemory when hashing paused (release).
	returnMemory *time.Timer
}

func newPasswords() (*passwords, error) {
	p := &passwords{slots: make(chan struct{}, runtime.GOMAXPROCS(0))}
	p.returnMemory = time.AfterFunc(memoryReturnDelay, debug.FreeOSMemory)
	p.returnMemory.Stop()
	dummy, err := p.hash(context.Background(), rand.Text())
	if err != nil {
		return nil, err
	}
	p.dummy = dummy
	return p, nil
}

func (p *passwords) acquire(ctx context.Context) error {
	select {
	case p.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting to hash a password: %w", ctx.Err())
	}
}

// release frees a slot. Once hashing pauses (no run for
// memoryReturnDelay), the memory of the hashes goes back to the system:
// otherwise the 19 MiB blocks stay in the heap until the scavenger returns
// them minutes later, and a service that hashed two passwords at start
// (the bootstrap admin, the dummy) idled at 86 MB of RSS. Returning it
// after every hash instead made each next hash fault its 19 MiB in again:
// measured with make bench, login cost 46 instead of 35 CPU ms.
func (p *passwords) release() {
	<-p.slots
	if len(p.slots) == 0 {
		p.returnMemory.Reset(memoryReturnDelay)
	}
}

// memoryReturnDelay is the pause in hashing after which its memory is
// returned: longer than the gap between logins under load (50 ms at
// 20/s), short enough that a quiet service is small.
const memoryReturnDelay = 250 * time.Millisecond

func (p *passwords) hash(ctx context.Context, password string) (PasswordHash, error) {
	if err := p.acquire(ctx); err != nil {
		return "", err
	}
	defer p.release()
	h, err := argon2id.CreateHash(password, argonParams)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return PasswordHash(h), nil
}

func (p *passwords) matches(ctx context.Context, password string, hash PasswordHash) (bool, error) {
	if err := p.acquire(ctx); err != nil {
		return false, err
	}
	defer p.release()
	ok, err := argon2id.ComparePasswordAndHash(password, string(hash))
	if err != nil {
		return false, fmt.Errorf("compare password: %w", err)
	}
	return ok, nil
}

// burn spends the time of a real comparison and discards the result.
func (p *passwords) burn(ctx context.Context, password string) error {
	_, err := p.matches(ctx, password, p.dummy)
	return err
}
