package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// run runs a host command; its error carries the command and its output.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ipBatch runs ip(8) commands in one process, in the named network
// namespace when netns is not empty.
func ipBatch(ctx context.Context, netns string, cmds []string) error {
	if len(cmds) == 0 {
		return nil
	}
	args := []string{"-batch", "-"}
	if netns != "" {
		args = append([]string{"-n", netns}, args...)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		where := "host"
		if netns != "" {
			where = "netns " + netns
		}
		return fmt.Errorf("ip (%s): %v: %s\ncommands:\n  %s", where, err, strings.TrimSpace(string(out)), strings.Join(cmds, "\n  "))
	}
	return nil
}

type hostLink struct {
	Name  string `json:"ifname"`
	Alias string `json:"ifalias"`
	// NetnsID is the id of the namespace a veth's peer lives in (nil when
	// the link has no peer in another namespace).
	NetnsID *int `json:"link_netnsid"`
}

// hostLinks lists the host's network interfaces by name.
func hostLinks(ctx context.Context) (map[string]hostLink, error) {
	out, err := exec.CommandContext(ctx, "ip", "-j", "link", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("listing the host's network interfaces: ip -j link show: %w", err)
	}
	var links []hostLink
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("reading ip -j link show: %w", err)
	}
	m := map[string]hostLink{}
	for _, l := range links {
		m[l.Name] = l
	}
	return m, nil
}

type route struct {
	prefix netip.Prefix
	text   string
	dev    string
}

// hostRoutes lists the host's IPv4 routes except the default route.
func hostRoutes(ctx context.Context) ([]route, error) {
	out, err := exec.CommandContext(ctx, "ip", "-4", "-j", "route", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("listing the host's routes: ip -4 -j route show: %w", err)
	}
	var rs []struct {
		Dst string `json:"dst"`
		Dev string `json:"dev"`
	}
	if err := json.Unmarshal(out, &rs); err != nil {
		return nil, fmt.Errorf("reading ip -j route show: %w", err)
	}
	var routes []route
	for _, r := range rs {
		if r.Dst == "default" {
			continue
		}
		s := r.Dst
		if !strings.Contains(s, "/") {
			s += "/32"
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			continue
		}
		dev := ""
		if r.Dev != "" {
			dev = " (dev " + r.Dev + ")"
		}
		routes = append(routes, route{prefix: p, text: r.Dst, dev: dev})
	}
	return routes, nil
}

// procStart returns a process's start time (clock ticks after boot), which
// with the PID identifies the process even if the PID is reused.
func procStart(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; fields after it are
	// counted from the closing parenthesis.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22 overall
}

// procState returns a process's state letter (R, S, T, Z...).
func procState(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return ""
	}
	return string(data[i+2])
}

// alive reports whether the process pid that started at start still runs.
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := procStart(pid)
	if err != nil || st != start {
		return false
	}
	return procState(pid) != "Z"
}

// nsInode identifies the namespace of a kind ("pid", "net") a process is in.
func nsInode(pid int, kind string) (string, error) {
	return os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, kind))
}

// nodePIDs lists the host PIDs of every process in the PID namespace of
// init (init included).
func nodePIDs(init int) ([]int, error) {
	want, err := nsInode(init, "pid")
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, err := nsInode(pid, "pid"); err == nil && ns == want {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// procComm is a process's command name.
func procComm(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(data))
}
