package httpcache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/portico-mesh/portico/services/platform/contract"
)

// entry is a stored response.
type entry struct {
	Status int         `json:"status"`
	Header http.Header `json:"header"`
	// StoredAt is the response_time of RFC 9111 section 4.2.3.
	StoredAt   time.Time     `json:"stored_at"`
	InitialAge time.Duration `json:"initial_age"`
	FreshFor   time.Duration `json:"fresh_for"`
	StaleFor   time.Duration `json:"stale_for"`
	// Shared is set when the origin allowed the response explicitly for
	// any caller (public, s-maxage or must-revalidate). Only then may it
	// answer a request with credentials: a response stored for an
	// anonymous request says nothing about what an identified caller
	// should see.
	Shared bool   `json:"shared"`
	Body   []byte `json:"-"`
}

// age is the entry's current age at now.
func (e *entry) age(now time.Time) time.Duration {
	return e.InitialAge + max(0, now.Sub(e.StoredAt))
}

// entryFormat starts every stored entry, so that a change of layout is
// read as a miss rather than as garbage.
const entryFormat byte = 1

// encode lays out an entry as format byte, metadata length, JSON metadata
// and the body as is: bodies are most of the bytes and stay unescaped.
func (e *entry) encode() ([]byte, error) {
	meta, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode entry: %w", err)
	}
	out := make([]byte, 0, 5+len(meta)+len(e.Body))
	out = append(out, entryFormat)
	out = binary.BigEndian.AppendUint32(out, uint32(len(meta)))
	out = append(out, meta...)
	return append(out, e.Body...), nil
}

var errBadEntry = errors.New("stored entry is unreadable")

func decodeEntry(b []byte) (*entry, error) {
	if len(b) < 5 || b[0] != entryFormat {
		return nil, errBadEntry
	}
	n := int(binary.BigEndian.Uint32(b[1:5]))
	if n > len(b)-5 {
		return nil, errBadEntry
	}
	var e entry
	if err := json.Unmarshal(b[5:5+n], &e); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadEntry, err)
	}
	e.Body = b[5+n:]
	return &e, nil
}

// resourceID identifies what a GET asks for, before Vary: the service,
// the prefix it is published under (it appears in the links a response
// carries) and the path with query.
func resourceID(req *Request) string {
	h := sha256.New()
	h.Write([]byte(req.Upstream))
	h.Write([]byte{0})
	h.Write([]byte(req.Header.Get(contract.HeaderForwardedPrefix)))
	h.Write([]byte{0})
	h.Write([]byte(req.URI))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// variantID identifies one variant of a resource: the values the request
// has for the header fields the stored response varies on. Identity
// headers are among them whenever the origin names them in Vary, so each
// caller then has an entry of their own.
func variantID(req *Request, vary []string) string {
	if len(vary) == 0 {
		return "-"
	}
	h := sha256.New()
	for _, name := range vary {
		h.Write([]byte(name))
		h.Write([]byte{0})
		// Values are combined as RFC 9110 section 5.3 allows and
		// whitespace around them does not make a different variant.
		for i, v := range req.Header.Values(name) {
			if i > 0 {
				h.Write([]byte{','})
			}
			h.Write([]byte(strings.TrimSpace(v)))
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
