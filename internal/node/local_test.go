package node

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestLocal(t *testing.T) {
	ctx := context.Background()
	var n Local
	res, err := n.Run(ctx, Cmd{Argv: []string{"sh", "-c", "cat; echo err >&2"}, Stdin: strings.NewReader("in")})
	if err != nil || string(res.Stdout) != "in" || strings.TrimSpace(string(res.Stderr)) != "err" {
		t.Fatalf("run: %q %q %v", res.Stdout, res.Stderr, err)
	}
	_, err = n.Run(ctx, Cmd{Argv: []string{"sh", "-c", "echo nope >&2; exit 3"}})
	var ce *CommandError
	if !errors.As(err, &ce) || ce.ExitCode != 3 || ce.Output != "nope" {
		t.Fatalf("failed command: %v", err)
	}
	p := filepath.Join(t.TempDir(), "f")
	if err := n.WriteFile(ctx, p, []byte("x"), 0o600, ""); err != nil {
		t.Fatal(err)
	}
	if data, err := n.ReadFile(ctx, p); err != nil || string(data) != "x" {
		t.Fatalf("read back: %q %v", data, err)
	}
}
