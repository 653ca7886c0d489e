package spec

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Severity says whether a problem stops the spec from being used.
type Severity string

// Severities.
const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Problem is one finding about a spec, located by its field path
// (spec.nodes[2].address) and, when known, its line in the file.
type Problem struct {
	Severity Severity
	Path     string
	Line     int
	Message  string
}

func (p Problem) String() string {
	loc := p.Path
	if loc == "" {
		loc = "(document)"
	}
	if p.Line > 0 {
		return fmt.Sprintf("%s: %s (line %d)", loc, p.Message, p.Line)
	}
	return fmt.Sprintf("%s: %s", loc, p.Message)
}

// Problems is every finding about one spec.
type Problems []Problem

// Errors returns the problems that make the spec unusable.
func (ps Problems) Errors() Problems { return ps.only(Error) }

// Warnings returns the problems that are allowed but have consequences.
func (ps Problems) Warnings() Problems { return ps.only(Warning) }

func (ps Problems) only(s Severity) Problems {
	var out Problems
	for _, p := range ps {
		if p.Severity == s {
			out = append(out, p)
		}
	}
	return out
}

// Err returns nil when there is no error-level problem, and otherwise an
// error that lists every one of them.
func (ps Problems) Err() error {
	errs := ps.Errors()
	if len(errs) == 0 {
		return nil
	}
	return &InvalidError{Problems: errs}
}

// InvalidError is returned for a spec with error-level problems.
type InvalidError struct{ Problems Problems }

func (e *InvalidError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid spec: %d problem(s)", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Load reads, strictly decodes, defaults and validates the spec at path.
// The returned error is for I/O; a spec that is not valid comes back with
// error-level Problems (see Problems.Err) and must not be used.
func Load(path string) (*Cluster, Problems, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("spec %s does not exist: create one with 'hastack init -o %s' or name another with -f", path, path)
		}
		return nil, nil, fmt.Errorf("read spec: %w", err)
	}
	c, ps := Parse(data)
	return c, ps, nil
}

// Parse strictly decodes a spec, applies defaults and validates it. The
// cluster is nil when the document could not be decoded at all.
func Parse(data []byte) (*Cluster, Problems) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, Problems{{Severity: Error, Message: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Problems{{Severity: Error, Line: extra.Line, Message: "more than one YAML document; a spec is exactly one"}}
	}
	w := walker{lines: map[string]int{}}
	w.walk(&doc, reflect.TypeOf(Cluster{}), "")
	// The walker pruned what it refused (unknown fields, second copies of
	// a field, values of the wrong type), so the rest decodes and is
	// validated too: every problem is reported at once, not one edit at
	// a time.
	strict := w.problems
	var c Cluster
	if err := doc.Decode(&c); err != nil {
		return nil, append(strict, Problem{Severity: Error, Message: err.Error()})
	}
	c.ApplyDefaults()
	ps := c.Validate()
	for i := range ps {
		ps[i].Line = w.lineOf(ps[i].Path)
	}
	if len(strict) == 0 {
		return &c, ps
	}
	// A semantic finding about a value that was pruned (a port of the
	// wrong type then reads as missing) says the same thing again: only
	// the strict finding is kept.
	out := strict
	for _, p := range ps {
		if !slices.ContainsFunc(strict, func(s Problem) bool { return within(p.Path, s.Path) }) {
			out = append(out, p)
		}
	}
	// The cluster was decoded from a pruned document, not the file: it
	// must not be used.
	return nil, out
}

// within reports whether path is at or under root (spec.nodes[0] is under
// spec.nodes; spec.nodesX is not).
func within(path, root string) bool {
	if root == "" || path == root {
		return true
	}
	if !strings.HasPrefix(path, root) {
		return false
	}
	c := path[len(root)]
	return c == '.' || c == '['
}

// prune replaces a refused value by null, which leaves the field's
// default in place for the rest of the validation. The line is kept.
func prune(n *yaml.Node) {
	*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
}

// walker checks a YAML tree against the Go types before decoding, so that
// every unknown field and wrong type is reported at once with its path.
type walker struct {
	problems Problems
	lines    map[string]int
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func (w *walker) add(n *yaml.Node, path, format string, args ...any) {
	w.problems = append(w.problems, Problem{Severity: Error, Path: path, Line: n.Line, Message: fmt.Sprintf(format, args...)})
}

func (w *walker) lineOf(path string) int {
	for p := path; p != ""; {
		if l, ok := w.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if path != "" {
		w.lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the default in place
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.add(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
			prune(n)
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		// Optional blocks (ssh) and tri-state flags: the pointer only
		// records presence; the value is checked as its element type.
		w.walk(n, t.Elem(), path)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			w.add(n, path, "must be true or false, not %s", kindName(n))
			prune(n)
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "must be a mapping of fields, not %s", kindName(n))
			prune(n)
			return
		}
		fields := yamlFields(t)
		seen := map[string]bool{}
		// kept is the mapping without the fields refused here, so that
		// the rest can be decoded and validated.
		var kept []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			fp := join(path, k.Value)
			if seen[k.Value] {
				w.add(k, fp, "field given twice")
				continue
			}
			seen[k.Value] = true
			f, ok := fields[k.Value]
			if !ok {
				msg := "unknown field"
				if s := closest(k.Value, fields); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				} else {
					msg += " (known: " + strings.Join(sortedKeys(fields), ", ") + ")"
				}
				w.add(k, fp, "%s", msg)
				continue
			}
			w.walk(v, f, fp)
			kept = append(kept, k, v)
		}
		n.Content = kept
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.add(n, path, "must be a list, not %s", kindName(n))
			prune(n)
			return
		}
		for i, item := range n.Content {
			w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.add(n, path, "must be a string, not %s", kindName(n))
			prune(n)
		}
	case reflect.Int:
		if n.Kind != yaml.ScalarNode {
			w.add(n, path, "must be a whole number, not %s", kindName(n))
			prune(n)
			return
		}
		if _, err := strconv.Atoi(n.Value); err != nil {
			w.add(n, path, "must be a whole number, not %q", n.Value)
			prune(n)
		}
	case reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || n.Decode(&f) != nil {
			w.add(n, path, "must be a number, not %s", kindName(n))
			prune(n)
		}
	default:
		w.add(n, path, "internal: no check for Go kind %s", t.Kind())
		prune(n)
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys(m map[string]reflect.Type) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// closest returns the known field nearest to s when it is a likely typo.
func closest(s string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for _, k := range sortedKeys(fields) {
		if strings.EqualFold(k, s) {
			return k
		}
		if d := EditDistance(strings.ToLower(s), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// EditDistance is the Levenshtein distance between a and b, for "did you
// mean" suggestions (spec fields here, service options in the linter).
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
