package productsbus

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Price is an exact amount of money with two decimal places, kept as an
// integer number of hundredths so that no value ever passes through a float.
// The zero value is 0.00.
type Price struct {
	cents int64
}

// Limits of a price; they match the numeric(12,2) column.
const (
	// PriceMaxIntegerDigits bounds a price below 10^10.
	PriceMaxIntegerDigits = 10
	// PriceScale is the number of decimal places a price may have.
	PriceScale = 2
)

// Reasons a price is refused. Their texts read as the detail of the
// offending request member.
var (
	ErrPriceSyntax    = errors.New("must be a decimal number, e.g. 19.99")
	ErrPriceNegative  = errors.New("must not be negative")
	ErrPricePrecision = errors.New("must have at most 2 decimal places")
	ErrPriceRange     = errors.New("must be less than 10000000000")
)

// ParsePrice reads a decimal in JSON number syntax (an optional minus sign,
// digits, an optional fraction and an optional exponent, e.g. "19.99",
// "1200.00", "1.5e2"). The value must be >= 0, below 10^10 and have at most
// two decimal places once trailing zeros are dropped ("19.990" is 19.99).
//
// It is a hand-written parser rather than a general decimal library on
// purpose: an exponent such as 1e999999999 is refused by counting digits,
// never by materialising the number.
func ParsePrice(text string) (Price, error) {
	negative, digits, exp, ok := splitDecimal(text)
	if !ok {
		return Price{}, ErrPriceSyntax
	}
	// The value is digits × 10^exp. Normalise: no leading zeros, and
	// trailing zeros folded into the exponent.
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return Price{}, nil // zero, whatever its sign or exponent
	}
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	digits = trimmed
	if negative {
		return Price{}, ErrPriceNegative
	}
	if exp < -PriceScale {
		return Price{}, ErrPricePrecision
	}
	// len(digits)+exp is the number of digits before the decimal point.
	if len(digits)+exp > PriceMaxIntegerDigits {
		return Price{}, ErrPriceRange
	}
	// Now at most 12 significant positions remain: safe for int64.
	cents, err := strconv.ParseInt(digits+strings.Repeat("0", exp+PriceScale), 10, 64)
	if err != nil {
		return Price{}, ErrPriceRange
	}
	return Price{cents: cents}, nil
}

// maxExponent is how far past the number of digits written an exponent is
// read exactly. Beyond that, the exponent alone makes the value out of
// range or too precise for any price, whatever the digits are.
const maxExponent = 1000

// splitDecimal splits JSON-number-like text into its sign, all of its
// significant digits and the power of ten they are scaled by.
func splitDecimal(text string) (negative bool, digits string, exp int, ok bool) {
	s := text
	if strings.HasPrefix(s, "-") {
		negative, s = true, s[1:]
	}
	intPart, s := leadingDigits(s)
	if intPart == "" {
		return false, "", 0, false
	}
	var frac string
	if strings.HasPrefix(s, ".") {
		frac, s = leadingDigits(s[1:])
		if frac == "" {
			return false, "", 0, false
		}
	}
	if s != "" {
		if s[0] != 'e' && s[0] != 'E' {
			return false, "", 0, false
		}
		s = s[1:]
		sign := 1
		switch {
		case strings.HasPrefix(s, "+"):
			s = s[1:]
		case strings.HasPrefix(s, "-"):
			sign, s = -1, s[1:]
		}
		expDigits, rest := leadingDigits(s)
		if expDigits == "" || rest != "" {
			return false, "", 0, false
		}
		// The bound grows with the digits: a fixed one let a text with more
		// digits than it ("1" and 1005 zeros, "e-99999") move a clamped
		// exponent back into range and parse as 10000.00.
		bound := len(intPart) + len(frac) + maxExponent
		exp = bound + 1
		if n, err := strconv.Atoi(expDigits); err == nil && n <= bound {
			exp = n
		}
		exp *= sign
	}
	return negative, intPart + frac, exp - len(frac), true
}

func leadingDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}

// String returns the price as decimal text with exactly two decimal
// places, e.g. "1200.00"; it is also how the price is written to SQL.
func (p Price) String() string {
	return fmt.Sprintf("%d.%02d", p.cents/100, p.cents%100)
}

// Equal reports whether p and q are the same amount.
func (p Price) Equal(q Price) bool { return p.cents == q.cents }
