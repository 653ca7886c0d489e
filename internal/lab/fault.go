package lab

import (
	"context"
	"encoding/json"
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

// A cut: the bridge port of the node's management NIC (the host side of
// its veth pair) is disabled, so the bridge forwards nothing from it or to
// it, as a cut cable or a dead switch port. The node keeps its link and
// addresses and sends as usual: its packets just go nowhere. The cut is
// made outside the node on purpose: rules inside it (iptables, arptables)
// make its sends fail at once, which a cut never does, and they miss what
// leaves through a packet socket. keepalived sends its gratuitous ARPs that
// way: a node cut that way that took the VIP (it hears no master) pulled
// clients' traffic for the VIP into the cut every 5 s.

func (l *Lab) mgmtNIC(nodeName string) (*Node, NICState, error) {
	nd, err := l.Node(nodeName)
	if err != nil {
		return nil, NICState{}, err
	}
	for _, nic := range nd.st.NICs {
		if nic.Network == spec.ManagementNetwork {
			return nd, nic, nil
		}
	}
	return nil, NICState{}, fmt.Errorf("%s has no NIC on the management network", nodeName)
}

// portState is the bridge port state of a host veth: "forwarding",
// "disabled", ...
func portState(ctx context.Context, veth string) (string, error) {
	out, err := exec.CommandContext(ctx, "bridge", "-j", "link", "show", "dev", veth).Output()
	if err != nil {
		return "", fmt.Errorf("bridge link show dev %s: %w", veth, err)
	}
	var ports []struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal(out, &ports); err != nil || len(ports) != 1 {
		return "", fmt.Errorf("bridge link show dev %s: unexpected answer %q", veth, strings.TrimSpace(string(out)))
	}
	return ports[0].State, nil
}

// Partition cuts the node off the management network.
func (l *Lab) Partition(ctx context.Context, nodeName string) (string, error) {
	nd, nic, err := l.mgmtNIC(nodeName)
	if err != nil {
		return "", err
	}
	if st, err := portState(ctx, nic.HostVeth); err != nil {
		return "", err
	} else if st == "disabled" {
		return fmt.Sprintf("%s: already cut off the management network (%s)", nodeName, nic.Name), nil
	}
	if err := run(ctx, "bridge", "link", "set", "dev", nic.HostVeth, "state", "0"); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: cut off the management network: the bridge forwards no frame from or to its %s (%s), ARP included, while its link stays up; heal with 'hastack lab fault heal %s'", nodeName, nic.Name, nd.Address(), nodeName), nil
}

// Heal restores the node's management network.
func (l *Lab) Heal(ctx context.Context, nodeName string) (string, error) {
	_, nic, err := l.mgmtNIC(nodeName)
	if err != nil {
		return "", err
	}
	if st, err := portState(ctx, nic.HostVeth); err != nil {
		return "", err
	} else if st != "disabled" {
		return fmt.Sprintf("%s: was not cut off; nothing to heal", nodeName), nil
	}
	if err := run(ctx, "bridge", "link", "set", "dev", nic.HostVeth, "state", "3"); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: management network restored on %s", nodeName, nic.Name), nil
}
