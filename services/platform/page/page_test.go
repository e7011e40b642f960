package page

import (
	"net/url"
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
	tests := []struct {
		limit, cursor string
		want          Request
		fields        []string
	}{
		{"", "", Request{Limit: DefaultLimit}, nil},
		{"1", EncodeCursor(7), Request{AfterID: 7, Limit: 1}, nil},
		{"100", "", Request{Limit: 100}, nil},
		{"0", "", Request{}, []string{"limit"}},
		{"101", "", Request{}, []string{"limit"}},
		{"ten", "", Request{}, []string{"limit"}},
		{"", "MDE", Request{}, []string{"cursor"}},
		{"-1", "x-y", Request{}, []string{"limit", "cursor"}},
	}
	for _, tt := range tests {
		got, errs := parse(tt.limit, tt.cursor)
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
