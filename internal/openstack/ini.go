package openstack

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Assignment is one "key = value" of a service config, where oslo.config
// would read it.
type Assignment struct {
	Section string // as oslo.config names the group: "DEFAULT" or lower case
	Key     string
	Value   string // continuation lines joined with "\n", quotes stripped
	Line    int    // 1-based line of the key
}

// Config is a parsed service config: its assignments in file order and
// the line each section starts on.
type Config struct {
	Assignments []Assignment
	Sections    map[string]int // section -> line of its first header
	// SectionOrder lists each distinct section once, in file order.
	SectionOrder []string
}

// ParseError is a line oslo.config refuses: a service given this file does
// not start.
type ParseError struct {
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// ParseConfig reads a service config with the rules of oslo.config's parser
// (oslo_config/iniparser.py and cfg.ConfigParser): '#' or ';' start a
// comment only at the start of a line; "key = value" or "key: value",
// whichever separator comes first; a line starting with a space or tab
// continues the previous value; quotes around a whole value are stripped;
// an assignment before any section header is an error. Group names other
// than DEFAULT are case-insensitive, so they are lower-cased here.
func ParseConfig(data []byte) (*Config, error) {
	if bytes.IndexByte(data, 0) >= 0 || !utf8.Valid(data) {
		return nil, &ParseError{Line: 1, Msg: "binary data: this is not a text file"}
	}
	c := &Config{Sections: map[string]int{}}
	section := ""
	var cur *Assignment
	flush := func() {
		if cur != nil {
			c.Assignments = append(c.Assignments, *cur)
			cur = nil
		}
	}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	for i, raw := range lines {
		n := i + 1
		line := strings.TrimRight(raw, " \t\r\f\v")
		switch {
		case line == "":
			flush()
			continue
		case line[0] == ' ' || line[0] == '\t':
			if cur == nil {
				return nil, &ParseError{Line: n, Msg: "unexpected continuation line (it starts with a space, but no option precedes it)"}
			}
			cur.Value += "\n" + strings.TrimLeft(line, " \t")
			continue
		}
		flush()
		switch {
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, &ParseError{Line: n, Msg: "invalid section header (it must end with ])"}
			}
			if len(line) <= 2 {
				return nil, &ParseError{Line: n, Msg: "empty section name"}
			}
			section = normalizeSection(line[1 : len(line)-1])
			if _, seen := c.Sections[section]; !seen {
				c.Sections[section] = n
				c.SectionOrder = append(c.SectionOrder, section)
			}
		case line[0] == '#' || line[0] == ';':
			// comment
		default:
			colon, equal := strings.IndexByte(line, ':'), strings.IndexByte(line, '=')
			if colon < 0 && equal < 0 {
				return nil, &ParseError{Line: n, Msg: "neither '=' nor ':' in an assignment"}
			}
			sep := colon
			if colon < 0 || (equal >= 0 && equal < colon) {
				sep = equal
			}
			key := strings.TrimSpace(line[:sep])
			if key == "" {
				return nil, &ParseError{Line: n, Msg: "empty option name"}
			}
			if section == "" {
				return nil, &ParseError{Line: n, Msg: fmt.Sprintf("option %q comes before any [section] header", key)}
			}
			value := strings.TrimSpace(line[sep+1:])
			if len(value) >= 2 && value[0] == value[len(value)-1] && (value[0] == '"' || value[0] == '\'') {
				value = value[1 : len(value)-1]
			}
			cur = &Assignment{Section: section, Key: key, Value: value, Line: n}
		}
	}
	flush()
	return c, nil
}

func normalizeSection(s string) string {
	if s == "DEFAULT" {
		return s
	}
	return strings.ToLower(s)
}

// Get returns the last assignment of key in section (oslo.config keeps the
// last value of a single-valued option).
func (c *Config) Get(section, key string) (Assignment, bool) {
	var out Assignment
	found := false
	for _, a := range c.Assignments {
		if a.Section == section && a.Key == key {
			out, found = a, true
		}
	}
	return out, found
}

// Has reports whether the file has a header for section.
func (c *Config) Has(section string) bool {
	_, ok := c.Sections[section]
	return ok
}

// iniFile builds a rendered service config: sections in order, each option
// with the comment that says why it has its value.
type iniFile struct {
	b       strings.Builder
	started bool
}

func (f *iniFile) comment(text string) {
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if l == "" {
			f.b.WriteString("#\n")
			continue
		}
		f.b.WriteString("# " + l + "\n")
	}
}

func (f *iniFile) section(name, why string) {
	if f.started {
		f.b.WriteString("\n")
	}
	f.started = true
	f.b.WriteString("[" + name + "]\n")
	if why != "" {
		f.comment(why)
	}
}

// set writes one option; why is the reason for its value (empty only when
// the value needs no reason, e.g. a server list).
// An option without a reason follows the previous one directly: it is
// part of the same setting (e.g. the three reconnection timings).
func (f *iniFile) set(key, value, why string) {
	if why != "" {
		f.b.WriteString("\n")
		f.comment(why)
	}
	f.b.WriteString(key + " = " + value + "\n")
}

// note is a comment paragraph of its own, not attached to an option.
func (f *iniFile) note(text string) {
	f.b.WriteString("\n")
	f.comment(text)
}
