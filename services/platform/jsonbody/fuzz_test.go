package jsonbody

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecodeObject: a body is accepted only when it is exactly one valid
// JSON object whose members all have distinct names (after unescaping),
// and then every member's value is valid JSON. Seeds: f.Add below and
// testdata/fuzz/FuzzDecodeObject.
func FuzzDecodeObject(f *testing.F) {
	for _, seed := range []string{
		`{"name":"Laptop","price":1200.00}`, `{}`, ` {"a":{"a":1,"a":2}} `, `{"a":1,"a":2}`,
		`{"a":1,"\u0061":2}`, `{"a":1}{"b":2}`, `{"a":1} x`, `[1]`, `null`, `{"a":[1,{"b":null}]`,
		"{\"\xff\":1,\"\xfe\":2}", ``, `   `,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		members, err := DecodeObject(body)
		if err != nil {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted %q, which is not valid JSON", body)
		}
		trimmed := bytes.TrimLeft(body, " \t\r\n")
		if len(trimmed) == 0 || trimmed[0] != '{' {
			t.Fatalf("accepted %q, which is not an object", body)
		}
		// encoding/json keeps the last of duplicate members; a count of
		// the names it reads tells whether any was repeated.
		var names []string
		dec := json.NewDecoder(bytes.NewReader(body))
		if _, err := dec.Token(); err != nil {
			t.Fatal(err)
		}
		for dec.More() {
			name, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, name.(string))
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				t.Fatal(err)
			}
		}
		if len(names) != len(members) {
			t.Fatalf("accepted %q: %d member names, %d members", body, len(names), len(members))
		}
		for name, value := range members {
			if !json.Valid(value) {
				t.Fatalf("member %q of %q is %q, not valid JSON", name, body, value)
			}
		}
	})
}
