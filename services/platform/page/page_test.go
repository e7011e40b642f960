package page

import (
	"net/url"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, id := range []int64{1, 42, 1 << 40, 1<<63 - 1} {
		got, ok := DecodeCursor(EncodeCursor(id))
		if !ok || got != id {
			t.Errorf("round trip of %d: %d, %v", id, got, ok)
		}
	}
}

func TestDecodeCursorRefusesWhatWasNeverIssued(t *testing.T) {
	for _, bad := range []string{
		"", "!!", "MA" /* "0" */, "LTE" /* "-1" */, "MDE" /* "01" */, "KzE" /* "+1" */, "YWJj", /* "abc" */
		"MQ==" /* padded "1" */, "MR" /* "1" with stray bits */, "MQ" + "\n",
	} {
		if id, ok := DecodeCursor(bad); ok {
			t.Errorf("DecodeCursor(%q) = %d, want refused", bad, id)
		}
	}
}

func TestParse(t *testing.T) {
	absent := "\x00absent" // stands for a parameter the query does not have
	tests := []struct {
		limit, cursor string
		want          Request
		fields        []string
	}{
		{absent, absent, Request{Limit: DefaultLimit}, nil},
		{"1", EncodeCursor(7), Request{AfterID: 7, Limit: 1}, nil},
		{"100", absent, Request{Limit: 100}, nil},
		{"0", absent, Request{}, []string{"limit"}},
		{"101", absent, Request{}, []string{"limit"}},
		{"ten", absent, Request{}, []string{"limit"}},
		{absent, "MDE", Request{}, []string{"cursor"}},
		{"-1", "x-y", Request{}, []string{"limit", "cursor"}},
		// Given but empty is a value, and not a valid one.
		{"", absent, Request{}, []string{"limit"}},
		{absent, "", Request{}, []string{"cursor"}},
	}
	param := func(v string) *string {
		if v == absent {
			return nil
		}
		return &v
	}
	for _, tt := range tests {
		got, errs := parse(param(tt.limit), param(tt.cursor))
		var fields []string
		for _, e := range errs {
			fields = append(fields, e.Field)
			if e.Pointer != "#/"+e.Field || e.Detail == "" {
				t.Errorf("limit=%q cursor=%q: field error %+v", tt.limit, tt.cursor, e)
			}
		}
		if diff := cmp.Diff(tt.fields, fields); diff != "" {
			t.Errorf("limit=%q cursor=%q: fields (-want +got):\n%s", tt.limit, tt.cursor, diff)
		}
		if tt.fields == nil && got != tt.want {
			t.Errorf("limit=%q cursor=%q: %+v, want %+v", tt.limit, tt.cursor, got, tt.want)
		}
	}
}

// The Link target is a query-only reference: resolved against whatever
// URL the client used, it keeps that URL's path, prefix included.
func TestNextLinkResolvesAgainstTheRequestURL(t *testing.T) {
	cursor, q := Next(Request{Limit: 2}, 9)
	q.Set("name", "a b&c")
	link := NextLink(q)
	want := `<?cursor=` + cursor + `&limit=2&name=a+b%26c>; rel="next"`
	if link != want {
		t.Fatalf("NextLink = %s, want %s", link, want)
	}
	ref, err := url.Parse(link[1 : len(link)-len(`>; rel="next"`)])
	if err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse("https://portico.example/api/products/products?limit=2&name=old")
	got := base.ResolveReference(ref)
	if got.Path != "/api/products/products" || got.Query().Get("cursor") != cursor || got.Query().Get("name") != "a b&c" {
		t.Errorf("resolved to %s", got)
	}
}

// TestCursorPatternIsWhatDecodeAccepts: the documents' pattern matches a
// text exactly when DecodeCursor accepts it (ids below 10^18): every
// cursor issued, and none of its one-character changes that are refused.
func TestCursorPatternIsWhatDecodeAccepts(t *testing.T) {
	re := regexp.MustCompile(CursorPattern)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	ids := []int64{1, 9, 10, 99, 100, 999, 1000, 123456789, 999999999999999999}
	for id := int64(1); id < 5000; id++ {
		ids = append(ids, id)
	}
	for id := int64(7); id < 100_000_000_000_000_000; id *= 7 {
		ids = append(ids, id, id*3+1)
	}
	for _, id := range ids {
		cursor := EncodeCursor(id)
		if !re.MatchString(cursor) {
			t.Fatalf("the pattern refuses %q, the cursor of %d", cursor, id)
		}
		for i := range len(cursor) {
			for _, c := range alphabet {
				changed := cursor[:i] + string(c) + cursor[i+1:]
				_, ok := DecodeCursor(changed)
				if re.MatchString(changed) != ok {
					t.Fatalf("%q: pattern %v, DecodeCursor %v", changed, re.MatchString(changed), ok)
				}
			}
		}
	}
	for _, refused := range []string{"", "MA", "MDE", "LTE", "MQ==", "MR", EncodeCursor(1_000_000_000_000_000_000)} {
		if re.MatchString(refused) {
			t.Errorf("the pattern matches %q", refused)
		}
	}
}
