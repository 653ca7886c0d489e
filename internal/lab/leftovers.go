package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// leftovers are host objects of a lab whose state file is gone (a run that
// was killed, a state folder removed by hand), found by their marks: the
// lab's alias on links, the lab's naming of host veths together with a peer
// in a namespace named for the prefix, and the lab's comment on firewall
// rules. Nothing else on the host matches all of these.
type leftovers struct {
	netns []string   // network namespace names
	veths []string   // host ends of node NICs
	rules [][]string // iptables rules, as given to -D
}

func (lo leftovers) empty() bool {
	return len(lo.netns) == 0 && len(lo.veths) == 0 && len(lo.rules) == 0
}

func (lo leftovers) String() string {
	var parts []string
	if n := len(lo.netns); n > 0 {
		parts = append(parts, fmt.Sprintf("%d network namespaces", n))
	}
	if n := len(lo.veths); n > 0 {
		parts = append(parts, fmt.Sprintf("%d veths", n))
	}
	if n := len(lo.rules); n > 0 {
		parts = append(parts, fmt.Sprintf("%d firewall rules", n))
	}
	if len(parts) == 0 {
		return "no network objects"
	}
	return strings.Join(parts, ", ")
}

// vethName matches the host veth names the lab gives node NICs
// (<prefix>v<node>n<nic>) and NTP upstreams (<prefix>u<n>).
func vethName(prefix string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `(v[0-9]+n[0-9]+|u[0-9]+)$`)
}

// findLeftovers lists the host objects that carry the marks of a lab with
// this prefix. It reads only; errors reading the host leave a part out.
func findLeftovers(ctx context.Context, prefix string) leftovers {
	var lo leftovers
	nsByID := map[int]string{}
	var nsNames []string
	if out, err := exec.CommandContext(ctx, "ip", "-j", "netns", "list").Output(); err == nil && len(strings.TrimSpace(string(out))) > 0 {
		var list []struct {
			Name string `json:"name"`
			ID   *int   `json:"id"`
		}
		if json.Unmarshal(out, &list) == nil {
			for _, n := range list {
				if !strings.HasPrefix(n.Name, prefix+"-") {
					continue
				}
				nsNames = append(nsNames, n.Name)
				if n.ID != nil {
					nsByID[*n.ID] = n.Name
				}
			}
		}
	}
	ours := map[string]bool{}
	if links, err := hostLinks(ctx); err == nil {
		re := vethName(prefix)
		for name, l := range links {
			if !re.MatchString(name) {
				continue
			}
			peerNS := ""
			if l.NetnsID != nil {
				peerNS = nsByID[*l.NetnsID]
			}
			if l.Alias == linkAlias(prefix) || peerNS != "" {
				lo.veths = append(lo.veths, name)
				if peerNS != "" {
					ours[peerNS] = true
				}
			}
		}
	}
	for _, ns := range nsNames {
		// A namespace of the lab's name is the lab's when a lab veth leads
		// into it, or when it holds nothing but loopback (a node whose NICs
		// were never wired).
		if ours[ns] || onlyLoopback(ctx, ns) {
			lo.netns = append(lo.netns, ns)
		}
	}
	lo.rules = markedForwardRules(ctx, prefix)
	return lo
}

func onlyLoopback(ctx context.Context, netns string) bool {
	out, err := exec.CommandContext(ctx, "ip", "-n", netns, "-j", "link", "show").Output()
	if err != nil {
		return false
	}
	var links []hostLink
	if json.Unmarshal(out, &links) != nil {
		return false
	}
	for _, l := range links {
		if l.Name != "lo" {
			return false
		}
	}
	return true
}

// markedForwardRules lists the host FORWARD rules that carry the lab's
// comment, in the form iptables -D takes.
func markedForwardRules(ctx context.Context, prefix string) [][]string {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil
	}
	out, err := exec.CommandContext(ctx, "iptables", "-w", "-S", "FORWARD").Output()
	if err != nil {
		return nil
	}
	var rules [][]string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" {
			continue
		}
		for i := range f {
			f[i] = strings.Trim(f[i], `"`)
		}
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "--comment" && f[i+1] == linkAlias(prefix) {
				rules = append(rules, f[1:])
				break
			}
		}
	}
	return rules
}

// removeLeftovers removes what findLeftovers found. A namespace that still
// has processes is left alone and reported: removing its name would hide
// it without stopping them.
func removeLeftovers(ctx context.Context, lo leftovers) error {
	var errs []error
	for _, ns := range lo.netns {
		if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output(); err == nil && len(strings.TrimSpace(string(out))) > 0 {
			errs = append(errs, fmt.Errorf("network namespace %s still has processes (%s): not removed; stop them first", ns, strings.Join(strings.Fields(string(out)), " ")))
			continue
		}
		p := filepath.Join("/run/netns", ns)
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing network namespace %s: %w", ns, err))
		}
	}
	for _, v := range lo.veths {
		// A veth goes with its peer's namespace, a little after it.
		if err := run(ctx, "ip", "link", "del", v); err != nil && !linkGone(ctx, v, 3*time.Second) {
			errs = append(errs, err)
		}
	}
	for _, rule := range lo.rules {
		if err := run(ctx, "iptables", append([]string{"-w", "-D"}, rule...)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// linkGone waits for a link the kernel is removing (a veth whose namespace
// is being torn down) to vanish.
func linkGone(ctx context.Context, name string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for linkExists(ctx, name) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
