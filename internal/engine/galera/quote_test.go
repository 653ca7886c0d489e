package galera

import "testing"

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain":           `'plain'`,
		"it's":            `'it\'s'`,
		`back\slash`:      `'back\\slash'`,
		"x';DROP USER x":  `'x\';DROP USER x'`,
		"a\nb\x00c\r\x1a": `'a\nb\0c\r\Z'`,
		`\'`:              `'\\\''`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}
