package page

import (
	"math"
	"testing"
)

// FuzzCursor: a cursor is accepted only in the one text EncodeCursor
// writes for its id, and every id EncodeCursor is given for a real page
// (positive) comes back from DecodeCursor. Seeds: f.Add below and
// testdata/fuzz/FuzzCursor.
func FuzzCursor(f *testing.F) {
	f.Add(EncodeCursor(1), int64(1))
	f.Add(EncodeCursor(42), int64(math.MaxInt64))
	f.Add("MDE", int64(0))  // "01": the same id, never issued
	f.Add("MQ=", int64(-1)) // padded
	f.Add("MR", int64(math.MinInt64))
	f.Add("LTE", int64(-42)) // "-1"
	f.Fuzz(func(t *testing.T, cursor string, id int64) {
		if got, ok := DecodeCursor(cursor); ok {
			if got <= 0 {
				t.Fatalf("DecodeCursor(%q) accepted the id %d", cursor, got)
			}
			if again := EncodeCursor(got); again != cursor {
				t.Fatalf("DecodeCursor(%q) = %d, which encodes as %q: not the text accepted", cursor, got, again)
			}
		}
		got, ok := DecodeCursor(EncodeCursor(id))
		switch {
		case id > 0 && (!ok || got != id):
			t.Fatalf("the cursor of %d decodes to %d, %v", id, got, ok)
		case id <= 0 && ok:
			t.Fatalf("the cursor of %d, never issued, was accepted as %d", id, got)
		}
	})
}
