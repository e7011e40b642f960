package productsbus

import (
	"errors"
	"testing"
)

func TestParsePrice(t *testing.T) {
	tests := []struct {
		text string
		want string // String() of the result
		err  error
	}{
		{text: "19.99", want: "19.99"},
		{text: "1200.00", want: "1200.00"},
		{text: "1200", want: "1200.00"},
		{text: "0.10", want: "0.10"},
		{text: "0.1", want: "0.10"},
		{text: "0", want: "0.00"},
		{text: "-0", want: "0.00"},
		{text: "-0.00", want: "0.00"},
		{text: "19.990", want: "19.99"}, // the value has two places
		{text: "1.5e2", want: "150.00"},
		{text: "1234E-2", want: "12.34"},
		{text: "9999999999.99", want: "9999999999.99"},
		{text: "0e999999999999", want: "0.00"},
		{text: "007.50", want: "7.50"},

		{text: "-0.01", err: ErrPriceNegative},
		{text: "-5", err: ErrPriceNegative},
		{text: "19.999", err: ErrPricePrecision},
		{text: "0.001", err: ErrPricePrecision},
		{text: "1e-3", err: ErrPricePrecision},
		{text: "1e-999999999999", err: ErrPricePrecision},
		{text: "10000000000", err: ErrPriceRange},
		{text: "10000000000.00", err: ErrPriceRange},
		{text: "1e10", err: ErrPriceRange},
		{text: "1e999999999", err: ErrPriceRange},
		{text: "99999999999999999999999", err: ErrPriceRange},

		{text: "", err: ErrPriceSyntax},
		{text: "abc", err: ErrPriceSyntax},
		{text: "19.99.1", err: ErrPriceSyntax},
		{text: ".5", err: ErrPriceSyntax},
		{text: "5.", err: ErrPriceSyntax},
		{text: " 5", err: ErrPriceSyntax},
		{text: "5 ", err: ErrPriceSyntax},
		{text: "+5", err: ErrPriceSyntax},
		{text: "1e", err: ErrPriceSyntax},
		{text: "1e+", err: ErrPriceSyntax},
		{text: "NaN", err: ErrPriceSyntax},
		{text: "Infinity", err: ErrPriceSyntax},
		{text: "0x10", err: ErrPriceSyntax},
		{text: "1,50", err: ErrPriceSyntax},
		{text: `"5"`, err: ErrPriceSyntax},
	}
	for _, tc := range tests {
		t.Run(tc.text, func(t *testing.T) {
			got, err := ParsePrice(tc.text)
			if !errors.Is(err, tc.err) {
				t.Fatalf("ParsePrice(%q) error = %v, want %v", tc.text, err, tc.err)
			}
			if err == nil && got.String() != tc.want {
				t.Errorf("ParsePrice(%q) = %s, want %s", tc.text, got, tc.want)
			}
		})
	}
}

func TestPreconditionMatches(t *testing.T) {
	tests := []struct {
		name    string
		pc      Precondition
		version int64
		want    bool
	}{
		{"absent", Precondition{}, 3, true},
		{"any", Precondition{Present: true, Any: true}, 3, true},
		{"current", Precondition{Present: true, Versions: []int64{2, 3}}, 3, true},
		{"stale", Precondition{Present: true, Versions: []int64{2}}, 3, false},
		{"nothing usable", Precondition{Present: true}, 3, false},
	}
	for _, tc := range tests {
		if got := tc.pc.matches(tc.version); got != tc.want {
			t.Errorf("%s: matches(%d) = %v, want %v", tc.name, tc.version, got, tc.want)
		}
	}
}
