package lab

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hastack/hastack/internal/spec"
)

// Fault primitives: what the drills do to nodes, each returning a line that
// says what was done.

// Kill kills process on the node with SIGKILL: a supervised service by
// name, or every process whose command name is process. With process
// empty it kills every process of the node but its init: the node stays,
// as after a power cut and a reboot that started nothing.
func (l *Lab) Kill(ctx context.Context, nodeName, process string) (string, error) {
	nd, err := l.Node(nodeName)
	if err != nil {
		return "", err
	}
	if process != "" {
		if st, err := nd.Supervisor().Status(ctx, process); err == nil && st.Running {
			if err := nd.Supervisor().Signal(ctx, process, syscall.SIGKILL); err != nil {
				return "", err
			}
			return fmt.Sprintf("%s: killed service %s (pid %d on the node) with SIGKILL", nodeName, process, st.PID), nil
		}
	}
	pids, err := nodePIDs(nd.PID())
	if err != nil {
		return "", fmt.Errorf("%s: listing processes: %w", nodeName, err)
	}
	var killed []string
	for _, pid := range pids {
		if pid == nd.PID() {
			continue
		}
		comm := procComm(pid)
		if process != "" && comm != process {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			killed = append(killed, fmt.Sprintf("%s[%d]", comm, pid))
		}
	}
	if len(killed) == 0 {
		if process == "" {
			return fmt.Sprintf("%s: no process to kill besides the node's init", nodeName), nil
		}
		return "", fmt.Errorf("%s: no service or process named %q runs on the node", nodeName, process)
	}
	sort.Strings(killed)
	what := "every process"
	if process != "" {
		what = "process " + process
	}
	return fmt.Sprintf("%s: killed %s with SIGKILL: %s (host PIDs)", nodeName, what, strings.Join(killed, " ")), nil
}

// Freeze stops every process of the node but its init with SIGSTOP: the
// node holds its sockets and memory but answers nothing, like a host that
// hangs. Processes started meanwhile are caught by repeating until every
// process is stopped.
func (l *Lab) Freeze(ctx context.Context, nodeName string) (string, error) {
	nd, err := l.Node(nodeName)
	if err != nil {
		return "", err
	}
	stopped := map[int]bool{}
	for round := 0; ; round++ {
		pids, err := nodePIDs(nd.PID())
		if err != nil {
			return "", err
		}
		pending := 0
		for _, pid := range pids {
			if pid == nd.PID() {
				continue
			}
			if s := procState(pid); s == "T" || s == "t" || s == "Z" || s == "" {
				continue
			}
			pending++
			if err := syscall.Kill(pid, syscall.SIGSTOP); err == nil {
				stopped[pid] = true
			}
		}
		if pending == 0 {
			break
		}
		if round >= 50 || ctx.Err() != nil {
			return "", fmt.Errorf("%s: processes keep appearing; %d stopped so far (thaw with 'hastack lab fault thaw %s')", nodeName, len(stopped), nodeName)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Sprintf("%s: froze %d processes with SIGSTOP (thaw with 'hastack lab fault thaw %s')", nodeName, len(stopped), nodeName), nil
}

// Thaw continues every stopped process of the node.
func (l *Lab) Thaw(ctx context.Context, nodeName string) (string, error) {
	nd, err := l.Node(nodeName)
	if err != nil {
		return "", err
	}
	pids, err := nodePIDs(nd.PID())
	if err != nil {
		return "", err
	}
	n := 0
	for _, pid := range pids {
		if s := procState(pid); s == "T" || s == "t" {
			if syscall.Kill(pid, syscall.SIGCONT) == nil {
				n++
			}
		}
	}
	return fmt.Sprintf("%s: thawed %d processes with SIGCONT", nodeName, n), nil
}

// The partition rules: every packet in or out of the node's management NIC
// is dropped inside the node's network namespace. The node keeps its link
// and addresses, as in a real partition: it just hears nobody.
// partitionRule is one rule of a cut, for iptables (IP) or arptables (ARP).
type partitionRule struct {
	tool string
	args []string
}

// partitionRules drop every frame of the management NIC, ARP included: a
// cut cable carries no ARP either, and a node that still answered ARP for
// the VIP it held would pull clients' traffic into the cut.
func partitionRules(mgmtIf string) []partitionRule {
	return []partitionRule{
		{"iptables", []string{"INPUT", "-i", mgmtIf, "-m", "comment", "--comment", "hastack-partition", "-j", "DROP"}},
		{"iptables", []string{"OUTPUT", "-o", mgmtIf, "-m", "comment", "--comment", "hastack-partition", "-j", "DROP"}},
		{"arptables", []string{"INPUT", "-i", mgmtIf, "-j", "DROP"}},
		{"arptables", []string{"OUTPUT", "-o", mgmtIf, "-j", "DROP"}},
	}
}

func (l *Lab) mgmtNIC(nodeName string) (*Node, string, error) {
	nd, err := l.Node(nodeName)
	if err != nil {
		return nil, "", err
	}
	for _, nic := range nd.st.NICs {
		if nic.Network == spec.ManagementNetwork {
			return nd, nic.Name, nil
		}
	}
	return nil, "", fmt.Errorf("%s has no NIC on the management network", nodeName)
}

func tablesIn(ctx context.Context, nd *Node, tool string, args ...string) error {
	argv := []string{"-t", fmt.Sprint(nd.PID()), "-n", "--", tool}
	if tool == "iptables" {
		argv = append(argv, "-w") // wait for the xtables lock
	}
	out, err := exec.CommandContext(ctx, "nsenter", append(argv, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %s %s: %v: %s", nd.Name(), tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Partition cuts the node off the management network.
func (l *Lab) Partition(ctx context.Context, nodeName string) (string, error) {
	nd, ifname, err := l.mgmtNIC(nodeName)
	if err != nil {
		return "", err
	}
	added := 0
	for _, r := range partitionRules(ifname) {
		if tablesIn(ctx, nd, r.tool, append([]string{"-C"}, r.args...)...) == nil {
			continue
		}
		if err := tablesIn(ctx, nd, r.tool, append([]string{"-I"}, r.args...)...); err != nil {
			return "", err
		}
		added++
	}
	if added == 0 {
		return fmt.Sprintf("%s: already cut off the management network (%s)", nodeName, ifname), nil
	}
	return fmt.Sprintf("%s: cut off the management network: every packet in or out of %s (%s), ARP included, is dropped; heal with 'hastack lab fault heal %s'", nodeName, ifname, nd.Address(), nodeName), nil
}

// Heal restores the node's management network.
func (l *Lab) Heal(ctx context.Context, nodeName string) (string, error) {
	nd, ifname, err := l.mgmtNIC(nodeName)
	if err != nil {
		return "", err
	}
	removed := 0
	var errs []error
	for _, r := range partitionRules(ifname) {
		for tablesIn(ctx, nd, r.tool, append([]string{"-C"}, r.args...)...) == nil {
			if err := tablesIn(ctx, nd, r.tool, append([]string{"-D"}, r.args...)...); err != nil {
				errs = append(errs, err)
				break
			}
			removed++
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	if removed == 0 {
		return fmt.Sprintf("%s: was not cut off; nothing to heal", nodeName), nil
	}
	return fmt.Sprintf("%s: management network restored on %s", nodeName, ifname), nil
}
