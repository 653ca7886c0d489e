package galera

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A record beside the spec outlives only an interrupted recovery: it is
// described with its decision; none, nothing is said.
func TestLeftoverRecords(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "hastack.yaml")
	if got := LeftoverRecords(context.Background(), spec, nil); len(got) != 0 {
		t.Fatalf("no record: %q", got)
	}
	rec := `{"cluster":"lab","uuid":"u","chosen":"ctl2","why":"most advanced: seqno 7","decided":"2026-12-01T10:00:00Z"}`
	if err := os.WriteFile(RecordPath(spec), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	got := LeftoverRecords(context.Background(), spec, nil)
	if len(got) != 1 || !strings.Contains(got[0], "decided at 2026-12-01T10:00:00Z to bootstrap from ctl2") || !strings.Contains(got[0], "hastack recover galera") {
		t.Fatalf("record: %q", got)
	}
	if err := os.WriteFile(RecordPath(spec), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := LeftoverRecords(context.Background(), spec, nil); len(got) != 1 || !strings.Contains(got[0], "cannot be read") {
		t.Fatalf("broken record: %q", got)
	}
}
