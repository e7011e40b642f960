package usersbus

import (
	"errors"
	"net/mail"
	"slices"
	"strings"
	"unicode/utf8"
)

// Limits of the account fields. The API documents the same numbers.
const (
	UsernameMinLen = 3
	UsernameMaxLen = 50
	PasswordMinLen = 8
	PasswordMaxLen = 128
	// EmailMaxLen is RFC 5321's limit on a forward path.
	EmailMaxLen = 254
)

// RoleAdmin may change any account and grant roles. It is the same string
// as the ingress's identity.RoleAdmin.
const RoleAdmin = "admin"

// KnownRoles are the roles an account may hold.
var KnownRoles = []string{RoleAdmin}

// CheckUsername reports why s is not a valid username: 3 to 50 ASCII
// letters, digits, '.', '_' or '-'. ASCII only, so that look-alike letters
// from other scripts cannot impersonate a name.
func CheckUsername(s string) error {
	if n := len(s); n < UsernameMinLen || n > UsernameMaxLen {
		return errors.New("must be 3 to 50 characters long")
	}
	for _, r := range s {
		if !isUsernameRune(r) {
			return errors.New("may contain only letters, digits, '.', '_' and '-'")
		}
	}
	return nil
}

func isUsernameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// CheckEmail reports why s is not a usable email address: a bare RFC 5322
// address (no display name) whose domain has a dot, at most 254 characters.
func CheckEmail(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if len(s) > EmailMaxLen {
		return errors.New("must be at most 254 characters long")
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Address != s || addr.Name != "" {
		return errors.New("must be a valid email address")
	}
	at := strings.LastIndexByte(s, '@')
	domain := s[at+1:]
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return errors.New("must be a valid email address")
	}
	return nil
}

// NormalizeEmail is the stored form of an email: lower-cased, so that
// uniqueness and login ignore case.
func NormalizeEmail(s string) string { return strings.ToLower(s) }

// CheckPassword reports why s is not an acceptable password: 8 to 128
// characters (not bytes).
func CheckPassword(s string) error {
	if n := utf8.RuneCountInString(s); n < PasswordMinLen || n > PasswordMaxLen {
		return errors.New("must be 8 to 128 characters long")
	}
	return nil
}

// UnknownRoles returns the indexes of the members of roles that are not
// known roles.
func UnknownRoles(roles []string) []int {
	var unknown []int
	for i, r := range roles {
		if !slices.Contains(KnownRoles, r) {
			unknown = append(unknown, i)
		}
	}
	return unknown
}

// NormalizeRoles is the stored form of a role list: sorted, without
// duplicates, never nil.
func NormalizeRoles(roles []string) []string {
	out := slices.Clone(roles)
	slices.Sort(out)
	out = slices.Compact(out)
	if out == nil {
		out = []string{}
	}
	return out
}
