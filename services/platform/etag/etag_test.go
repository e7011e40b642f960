package etag

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFormatRoundTrips(t *testing.T) {
	for _, v := range []int64{1, 7, 1 << 40} {
		tags, wildcard := Parse(Format(v))
		if wildcard || len(tags) != 1 || tags[0].Weak {
			t.Fatalf("Parse(Format(%d)) = %+v, %v", v, tags, wildcard)
		}
		if got, ok := tags[0].Version(); !ok || got != v {
			t.Errorf("version of %s = %d, %v", Format(v), got, ok)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		header   string
		tags     []Tag
		wildcard bool
	}{
		{"", nil, false},
		{" * ", nil, true},
		{`"1"`, []Tag{{Opaque: "1"}}, false},
		{`W/"2", "3"`, []Tag{{Weak: true, Opaque: "2"}, {Opaque: "3"}}, false},
		{`garbage, "4",, W/"x"`, []Tag{{Opaque: "4"}, {Weak: true, Opaque: "x"}}, false},
		{`"5`, nil, false},
		{`"a,b"`, []Tag{{Opaque: "a,b"}}, false},
	}
	for _, tt := range tests {
		tags, wildcard := Parse(tt.header)
		if diff := cmp.Diff(tt.tags, tags); diff != "" || wildcard != tt.wildcard {
			t.Errorf("Parse(%q): wildcard %v (-want +got):\n%s", tt.header, wildcard, diff)
		}
	}
}

func TestParseIfMatch(t *testing.T) {
	tests := map[string]IfMatch{
		"":                     {},
		"  ":                   {},
		"*":                    {Present: true, Any: true},
		`"3"`:                  {Present: true, Versions: []int64{3}},
		`"3", W/"4", "x", "5"`: {Present: true, Versions: []int64{3, 5}},
		`"03", "0", "-1"`:      {Present: true}, // names no version: matches nothing
		`W/"4"`:                {Present: true},
	}
	for header, want := range tests {
		if diff := cmp.Diff(want, ParseIfMatch(header)); diff != "" {
			t.Errorf("ParseIfMatch(%q) (-want +got):\n%s", header, diff)
		}
	}
}

func TestNoneMatch(t *testing.T) {
	tests := []struct {
		header string
		want   bool
	}{
		{"", false},
		{"*", true},
		{`"2"`, true},
		{`W/"2"`, true}, // weak comparison
		{`"1", "2"`, true},
		{`"1"`, false},
		{`"02"`, false},
	}
	for _, tt := range tests {
		if got := NoneMatch(tt.header, 2); got != tt.want {
			t.Errorf("NoneMatch(%q, 2) = %v, want %v", tt.header, got, tt.want)
		}
	}
}
