package localenvtest

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
)

// LogBuffer collects the log output of the code under test, written from
// many goroutines, for a test to read or wait on.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Contains reports whether s was written.
func (b *LogBuffer) Contains(s string) bool { return strings.Contains(b.String(), s) }

// Records returns the JSON log records (one a line) whose msg is msg.
func (b *LogBuffer) Records(msg string) []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(b.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}
