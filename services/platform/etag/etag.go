// Package etag formats and parses the entity tags of versioned resources:
// a resource at version 3 has the strong tag "3". Services compare tags
// to versions, never to bytes, so one parser serves If-Match (strong
// comparison, RFC 9110 section 13.1.1) and If-None-Match (weak comparison,
// section 13.1.2).
package etag

import (
	"strconv"
	"strings"
)

// Format is the strong entity tag of version, quotes included.
func Format(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// Tag is one member of an If-Match or If-None-Match list.
type Tag struct {
	Weak   bool
	Opaque string // without the quotes
}

// Version returns the version the tag names, if it names one.
func (t Tag) Version() (int64, bool) {
	v, err := strconv.ParseInt(t.Opaque, 10, 64)
	return v, err == nil && v > 0 && strconv.FormatInt(v, 10) == t.Opaque
}

// Parse reads a list of entity tags (RFC 9110 section 8.8.3) or "*".
// Garbage between tags is skipped: a tag that cannot be read matches
// nothing, which is what a client sending it can expect.
func Parse(header string) (tags []Tag, wildcard bool) {
	s := strings.TrimSpace(header)
	if s == "*" {
		return nil, true
	}
	for s != "" {
		s = strings.TrimLeft(s, " \t,")
		var t Tag
		if strings.HasPrefix(s, "W/") {
			t.Weak, s = true, s[2:]
		}
		if !strings.HasPrefix(s, `"`) {
			// Not a tag: skip to the next list member.
			if i := strings.IndexByte(s, ','); i >= 0 {
				s = s[i+1:]
				continue
			}
			break
		}
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			break
		}
		t.Opaque, s = s[1:end+1], s[end+2:]
		tags = append(tags, t)
	}
	return tags, false
}

// IfMatch is a parsed If-Match header. The zero value is an absent header.
type IfMatch struct {
	Present bool
	// Any is If-Match: *, which any existing resource satisfies.
	Any bool
	// Versions are those named by strong tags; weak and foreign tags match
	// nothing under strong comparison.
	Versions []int64
}

// ParseIfMatch reads an If-Match header.
func ParseIfMatch(header string) IfMatch {
	if strings.TrimSpace(header) == "" {
		return IfMatch{}
	}
	tags, wildcard := Parse(header)
	m := IfMatch{Present: true, Any: wildcard}
	for _, t := range tags {
		if v, ok := t.Version(); ok && !t.Weak {
			m.Versions = append(m.Versions, v)
		}
	}
	return m
}

// NoneMatch reports whether an If-None-Match header is satisfied by
// version, i.e. the client's copy is current and 304 is the answer.
func NoneMatch(header string, version int64) bool {
	if strings.TrimSpace(header) == "" {
		return false
	}
	tags, wildcard := Parse(header)
	if wildcard {
		return true
	}
	for _, t := range tags {
		if v, ok := t.Version(); ok && v == version {
			return true
		}
	}
	return false
}
