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
