package spec

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// SetClusterSSH returns the spec document data with spec.ssh set to s. A
// document without spec.ssh gets the block inserted as text right under
// 'spec:', so every other line, comment and layout stays as the operator
// wrote it; an existing block is replaced through the YAML tree (comments
// kept, layout normalised).
func SetClusterSSH(data []byte, s SSH) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a spec document")
	}
	specNode := mapValue(doc.Content[0], "spec")
	if specNode == nil || specNode.Kind != yaml.MappingNode {
		return nil, errors.New("the document has no spec mapping")
	}
	var block yaml.Node
	if err := block.Encode(s); err != nil {
		return nil, err
	}
	if old := mapValue(specNode, "ssh"); old != nil {
		*old = block
		var b bytes.Buffer
		enc := yaml.NewEncoder(&b)
		enc.SetIndent(2)
		if err := enc.Encode(&doc); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	// Insert after the 'spec:' line, indented as its first field is.
	if len(specNode.Content) == 0 {
		return nil, errors.New("spec has no fields")
	}
	specLine, indent := doc.Content[0].Content[indexOfKey(doc.Content[0], "spec")].Line, specNode.Content[0].Column-1
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(map[string]SSH{"ssh": s}); err != nil {
		return nil, err
	}
	pad := strings.Repeat(" ", indent)
	var ins strings.Builder
	ins.WriteString(pad + "# How hastack reaches every node: over SSH (written by 'hastack lab up --ssh').\n")
	for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		ins.WriteString(pad + l + "\n")
	}
	lines := strings.SplitAfter(string(data), "\n")
	if specLine < 1 || specLine > len(lines) || strings.TrimSpace(lines[specLine-1]) != "spec:" {
		return nil, fmt.Errorf("line %d: expected 'spec:' alone on its line", specLine)
	}
	result := strings.Join(lines[:specLine], "") + ins.String() + strings.Join(lines[specLine:], "")
	return []byte(result), nil
}

func indexOfKey(m *yaml.Node, key string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return i
		}
	}
	return -1
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if i := indexOfKey(m, key); i >= 0 {
		return m.Content[i+1]
	}
	return nil
}

// nodeItems finds spec.nodes in data: the sequence node, the spec mapping,
// and the document's lines. Only a block sequence can be edited as text.
func nodeItems(data []byte) (seq, specNode *yaml.Node, lines []string, err error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, nil, err
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil, nil, errors.New("not a spec document")
	}
	specNode = mapValue(doc.Content[0], "spec")
	if specNode == nil || specNode.Kind != yaml.MappingNode {
		return nil, nil, nil, errors.New("the document has no spec mapping")
	}
	seq = mapValue(specNode, "nodes")
	if seq == nil || seq.Kind != yaml.SequenceNode || len(seq.Content) == 0 {
		return nil, nil, nil, errors.New("spec.nodes is not a list of nodes")
	}
	if seq.Style&yaml.FlowStyle != 0 {
		return nil, nil, nil, errors.New("spec.nodes is written in flow style ([...]); write it as a block list (one '- name: ...' per node) so that it can be edited")
	}
	return seq, specNode, strings.SplitAfter(string(data), "\n"), nil
}

// itemEnd is the 1-based line after the last line of item i of seq: the
// blank and comment lines before what follows it stay with what follows.
func itemEnd(seq, specNode *yaml.Node, lines []string, i int) int {
	end := len(lines) + 1
	if i+1 < len(seq.Content) {
		end = seq.Content[i+1].Line
	} else if k := indexOfKey(specNode, "nodes"); k+2 < len(specNode.Content) {
		end = specNode.Content[k+2].Line
	}
	for end-1 > seq.Content[i].Line {
		l := strings.TrimSpace(lines[end-2])
		if l != "" && !strings.HasPrefix(l, "#") {
			break
		}
		end--
	}
	return end
}

// RemoveNode returns the spec document data without the node named name;
// every other line, comment and layout stays as written.
func RemoveNode(data []byte, name string) ([]byte, error) {
	seq, specNode, lines, err := nodeItems(data)
	if err != nil {
		return nil, err
	}
	for i, item := range seq.Content {
		if v := mapValue(item, "name"); v == nil || v.Value != name {
			continue
		}
		start, end := item.Line, itemEnd(seq, specNode, lines, i)
		if start < 1 || start > len(lines) || !strings.HasPrefix(strings.TrimSpace(lines[start-1]), "-") {
			return nil, fmt.Errorf("line %d: node %s does not start its own line with '- '", start, name)
		}
		return []byte(strings.Join(lines[:start-1], "") + strings.Join(lines[end-1:], "")), nil
	}
	return nil, fmt.Errorf("no node %q in spec.nodes", name)
}

// AddNode returns the spec document data with n added at the end of
// spec.nodes; every other line stays as written.
func AddNode(data []byte, n Node) ([]byte, error) {
	seq, specNode, lines, err := nodeItems(data)
	if err != nil {
		return nil, err
	}
	last := len(seq.Content) - 1
	end := itemEnd(seq, specNode, lines, last)
	// The dash of an item sits two columns left of its first key.
	dash := seq.Content[last].Column - 3
	if dash < 0 {
		return nil, fmt.Errorf("line %d: unexpected layout of spec.nodes", seq.Content[last].Line)
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode([]Node{n}); err != nil {
		return nil, err
	}
	pad := strings.Repeat(" ", dash)
	var ins strings.Builder
	for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		ins.WriteString(pad + l + "\n")
	}
	head := strings.Join(lines[:end-1], "")
	if head != "" && !strings.HasSuffix(head, "\n") {
		head += "\n"
	}
	return []byte(head + ins.String() + strings.Join(lines[end-1:], "")), nil
}
