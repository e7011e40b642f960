package httpcache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// directives are the Cache-Control directives of one message, by
// lower-case name; a directive without an argument maps to "".
type directives map[string]string

// parseCacheControl reads every Cache-Control field line of h (RFC 9111
// section 5.2). Quoted arguments may contain commas. A directive that
// appears twice keeps its first value, as section 4.2.1 asks for max-age.
func parseCacheControl(h http.Header) directives {
	d := directives{}
	for _, line := range h.Values("Cache-Control") {
		for _, part := range splitDirectives(line) {
			name, value, _ := strings.Cut(part, "=")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			if _, seen := d[name]; seen {
				continue
			}
			d[name] = strings.Trim(strings.TrimSpace(value), `"`)
		}
	}
	return d
}

// splitDirectives splits a field value on commas outside quoted strings.
// A quoted string is an argument: it opens with a quote right after "="
// and ends at the next quote not escaped by a backslash (RFC 9110 section
// 5.6.4). Any other quote, or one never closed, is an ordinary character,
// so that a malformed directive cannot swallow the ones after it: a
// no-store hidden that way would have the response stored.
func splitDirectives(s string) []string {
	var parts []string
	start := 0
	// After one unclosed quote, later quotes are ordinary too: the line is
	// malformed anyway, and not scanning to its end again for each one
	// keeps the split linear in its length.
	unclosed := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',':
			parts = append(parts, s[start:i])
			start = i + 1
		case '"':
			if unclosed || !strings.HasSuffix(strings.TrimRight(s[start:i], " \t"), "=") {
				continue
			}
			if end := closingQuote(s, i+1); end >= 0 {
				i = end
			} else {
				unclosed = true
			}
		}
	}
	return append(parts, s[start:])
}

// closingQuote is the index of the quote that ends a quoted string whose
// content starts at from, or -1.
func closingQuote(s string, from int) int {
	for i := from; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

func (d directives) has(name string) bool {
	_, ok := d[name]
	return ok
}

// seconds returns a delta-seconds argument. A malformed one is absent: a
// cache that cannot read a lifetime must not invent one.
func (d directives) seconds(name string) (time.Duration, bool) {
	v, ok := d[name]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return deltaSeconds(n), true
}

// deltaSeconds is a non-negative delta-seconds value as a duration. RFC
// 9111 section 1.2.2: a value too large to handle is "infinity", 2^31
// seconds; multiplied out unbounded it would overflow.
func deltaSeconds(n int64) time.Duration {
	const maxDelta = 1 << 31
	return time.Duration(min(n, maxDelta)) * time.Second
}
