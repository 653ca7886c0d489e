package drill

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/node"
)

// OsloCheck runs Debian's python on the node: the libraries load here
// (scripts/install-deps installs them); a module that is not there is
// reported with the Debian packages to install.
func TestOsloCheckNamesPackages(t *testing.T) {
	if _, err := os.Stat(Python); err != nil {
		t.Skip("no " + Python)
	}
	ctx := context.Background()
	if why := OsloCheck(ctx, node.Local{}); why != "" {
		t.Skipf("the OpenStack client libraries do not load on this machine: %s", why)
	}
	old := osloModules
	osloModules = old + ", hastack_no_such_module"
	defer func() { osloModules = old }()
	why := OsloCheck(ctx, node.Local{})
	for _, want := range []string{"python3-oslo.messaging", "python3-oslo.cache", "python3-pymemcache", "hastack_no_such_module"} {
		if !strings.Contains(why, want) {
			t.Errorf("missing library: %q does not name %s", why, want)
		}
	}
}

// On hosts that are not a lab, cut-node is refused: it would cut
// hastack's own SSH session; every other scenario runs over SSH.
func TestCutNodeLabOnly(t *testing.T) {
	for _, sc := range Scenarios() {
		if (sc.LabOnly != "") != (sc.Name == "cut-node") {
			t.Errorf("%s: lab only %q", sc.Name, sc.LabOnly)
		}
	}
	f := NodeFaulter{}
	if _, err := f.Cut(context.Background(), "ctl1"); err == nil {
		t.Error("NodeFaulter.Cut succeeded; it must refuse over SSH")
	}
}
