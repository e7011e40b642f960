package idempotency

import (
	"fmt"

	"github.com/portico-mesh/portico/services/platform/problem"
)

// MaxKeyLength bounds a key. Clients use UUIDs (36 characters) or
// similar; the bound keeps the index small and refuses abuse.
const MaxKeyLength = 255

// ParseKey validates a key as a client sent it: 1 to MaxKeyLength
// visible ASCII characters (0x21-0x7E). The key is opaque: the draft's
// quoted sf-string form ("...") is a valid key too, quotes included, and
// its retries send the same characters. A bad key is a 400 problem.
func ParseKey(value string) (string, error) {
	switch {
	case value == "":
		return "", badKey("must not be empty")
	case len(value) > MaxKeyLength:
		return "", badKey(fmt.Sprintf("is %d characters long; at most %d are allowed", len(value), MaxKeyLength))
	}
	for i := range len(value) {
		if c := value[i]; c < 0x21 || c > 0x7e {
			return "", badKey(fmt.Sprintf("has the byte 0x%02x at %d; only visible ASCII characters are allowed", c, i))
		}
	}
	return value, nil
}

func badKey(why string) *problem.Problem {
	return problem.Malformed(HeaderKey + " " + why)
}
