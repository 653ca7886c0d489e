package check

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/spec"
)

// gb is the unit of the spec's memoryGB and diskGB: decimal, as hardware
// is sold. A machine sold with 12 GB shows a MemTotal of about 12.5e9
// bytes (the kernel keeps some for itself), which passes a 12 GB minimum;
// measured in GiB (12.9e9 bytes) it would not.
const gb = 1e9

func fmtGB(bytes uint64) string { return fmt.Sprintf("%.1f GB", float64(bytes)/gb) }

// cpuInfo is what /proc/cpuinfo says of the first processor: the flags
// that tell a VM (hypervisor) and hardware virtualisation (vmx, svm).
type cpuInfo struct {
	Model      string
	Hypervisor bool // the CPU reports running under a hypervisor: a VM
	VMX        bool // Intel VT-x exposed to this OS
	SVM        bool // AMD-V exposed to this OS
}

// parseNproc reads nproc's output: the CPUs this node's processes may run
// on (affinity and cpusets applied), which is what the engines get.
func parseNproc(out string, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("nproc printed %q", strings.TrimSpace(out))
	}
	return n, nil
}

// parseCPUInfo reads the first processor's block of /proc/cpuinfo.
func parseCPUInfo(data string, err error) (cpuInfo, error) {
	if err != nil {
		return cpuInfo{}, err
	}
	var ci cpuInfo
	flags := false
	for _, line := range strings.Split(data, "\n") {
		if strings.TrimSpace(line) == "" && flags {
			break // end of the first processor's block
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			ci.Model = strings.TrimSpace(v)
		case "flags":
			flags = true
			for _, f := range strings.Fields(v) {
				switch f {
				case "hypervisor":
					ci.Hypervisor = true
				case "vmx":
					ci.VMX = true
				case "svm":
					ci.SVM = true
				}
			}
		}
	}
	if !flags {
		return ci, errors.New("/proc/cpuinfo has no flags line")
	}
	return ci, nil
}

// parseMemTotal reads MemTotal from /proc/meminfo, in bytes.
func parseMemTotal(data string, err error) (uint64, error) {
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo: MemTotal %q", f[1])
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("/proc/meminfo has no MemTotal")
}

func dmiString(vendor, product string) string {
	return strings.TrimSpace(strings.TrimSpace(vendor) + " " + strings.TrimSpace(product))
}

// dataPaths are the folders whose free space a node's role needs:
// the engines' data on a controller; /var/lib on a compute node, where
// nova keeps its instances (/var/lib/nova), whether or not nova is there
// yet.
func dataPaths(n spec.Node) []string {
	if n.IsController() {
		return []string{galera.DataDir, rabbitmq.HomeDir}
	}
	return []string{"/var/lib"}
}

// diskFree is one filesystem holding some of the paths asked about.
type diskFree struct {
	Source string
	Mount  string
	Avail  uint64
	Paths  []string // the paths asked about that live on it
}

// parseDF reads 'df -B1 --output=source,target,avail,file' and groups the
// paths by filesystem.
func parseDF(out string) ([]diskFree, error) {
	var fss []diskFree
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 4 {
			continue // header
		}
		avail, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("df: available %q on %s", f[2], f[1])
		}
		file := strings.Join(f[3:], " ")
		j := slices.IndexFunc(fss, func(d diskFree) bool { return d.Source == f[0] && d.Mount == f[1] })
		if j < 0 {
			fss = append(fss, diskFree{Source: f[0], Mount: f[1], Avail: avail})
			j = len(fss) - 1
		}
		fss[j].Paths = append(fss[j].Paths, file)
	}
	if len(fss) == 0 {
		return nil, errors.New("df printed no filesystem")
	}
	return fss, nil
}

// diskFree measures the free space under each path. A path that does not
// exist yet (the package that makes it is not installed) is measured at
// its closest existing parent: that is where its data will go.
func (g *gatherer) diskFree(ctx context.Context, nd node.Node, paths []string) ([]diskFree, error) {
	asked := slices.Clone(paths)
	for range 8 {
		argv := append([]string{"df", "-B1", "--output=source,target,avail,file"}, asked...)
		res, err := nd.Run(ctx, node.Cmd{Argv: argv})
		fss, perr := parseDF(string(res.Stdout))
		var ce *node.CommandError
		if err != nil && !errors.As(err, &ce) {
			return nil, err
		}
		if err == nil {
			return fss, perr
		}
		// df exits 1 when some path is missing and still reports the
		// others (the 'file' column says which). Ask again for the
		// missing ones' parents.
		found := map[string]bool{}
		for _, fs := range fss {
			for _, p := range fs.Paths {
				found[p] = true
			}
		}
		progress := false
		for i, p := range asked {
			if !found[p] && p != "/" {
				asked[i] = path.Dir(p)
				progress = true
			}
		}
		if !progress {
			return nil, err
		}
	}
	return nil, fmt.Errorf("df: no existing parent of %s", strings.Join(paths, ", "))
}

// link is one network interface from 'ip -j addr show'.
type link struct {
	Name  string
	Up    bool // administratively up and with carrier (UP, LOWER_UP)
	Addrs []string
}

func parseIPAddr(out string) ([]link, error) {
	var raw []struct {
		IfName   string   `json:"ifname"`
		Flags    []string `json:"flags"`
		AddrInfo []struct {
			Family    string `json:"family"`
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		return nil, fmt.Errorf("ip -j addr: %w", err)
	}
	links := make([]link, 0, len(raw))
	for _, r := range raw {
		l := link{Name: r.IfName, Up: slices.Contains(r.Flags, "UP") && slices.Contains(r.Flags, "LOWER_UP")}
		for _, a := range r.AddrInfo {
			if a.Family == "inet" || a.Family == "inet6" {
				l.Addrs = append(l.Addrs, a.Local)
			}
		}
		links = append(links, l)
	}
	return links, nil
}

func minimums(c *spec.Cluster, n spec.Node) spec.Minimums {
	if n.IsController() {
		return c.Spec.Requirements.Controller
	}
	return c.Spec.Requirements.Compute
}

// judgeHardware holds the node to its role's minimums: cores, memory,
// free space where the data goes, and NICs that are up and addressed as
// the spec says.
func judgeHardware(c *spec.Cluster, nf *nodeFacts) []Result {
	n := nf.Spec
	m := minimums(c, n)
	role := n.Role + " minimum"
	out := make([]Result, 0, 4)

	r := Result{Node: n.Name, Check: "cores", Limit: fmt.Sprintf(">= %d (%s)", m.Cores, role)}
	switch {
	case nf.CPUs.Err != nil:
		r.Status, r.Value = Fail, "not measured: "+errText(nf.CPUs.Err)
	default:
		r.Value = fmt.Sprintf("%d CPUs", nf.CPUs.V)
		if nf.CPU.V.Model != "" {
			r.Detail = nf.CPU.V.Model
		}
		r.Status = atLeast(uint64(nf.CPUs.V), uint64(m.Cores))
	}
	out = append(out, r)

	r = Result{Node: n.Name, Check: "memory", Limit: fmt.Sprintf(">= %d GB (%s)", m.MemoryGB, role)}
	if nf.MemTotal.Err != nil {
		r.Status, r.Value = Fail, "not measured: "+errText(nf.MemTotal.Err)
	} else {
		r.Value = fmtGB(nf.MemTotal.V)
		r.Status = atLeast(nf.MemTotal.V, uint64(m.MemoryGB)*gb)
	}
	out = append(out, r)

	out = append(out, judgeDisk(n, m, nf.Disks))
	out = append(out, judgeNICs(n, m, nf.Links))
	return out
}

// judgeDisk: every filesystem that holds engine data must have the
// minimum free. The document gives one disk size per node; a node that
// splits its data over several filesystems needs the room on each, since
// a full datadir stops its engine whatever the other disk holds.
func judgeDisk(n spec.Node, m spec.Minimums, d fact[[]diskFree]) Result {
	r := Result{Node: n.Name, Check: "disk", Limit: fmt.Sprintf(">= %d GB free (%s)", m.DiskGB, n.Role+" minimum")}
	if d.Err != nil {
		r.Status, r.Value = Fail, "not measured: "+errText(d.Err)
		return r
	}
	r.Status = OK
	var parts []string
	for _, fs := range d.V {
		st := atLeast(fs.Avail, uint64(m.DiskGB)*gb)
		r.Status = worst(r.Status, st)
		p := fmt.Sprintf("%s free on %s", fmtGB(fs.Avail), fs.Mount)
		if len(fs.Paths) != 1 || fs.Paths[0] != fs.Mount {
			p += " (" + strings.Join(fs.Paths, ", ") + ")"
		}
		parts = append(parts, p)
	}
	r.Value = strings.Join(parts, "; ")
	return r
}

// judgeNICs: every interface the spec gives the node exists, is up with
// carrier, and carries the address the spec gives it; and there are at
// least as many such NICs as the role needs.
func judgeNICs(n spec.Node, m spec.Minimums, links fact[[]link]) Result {
	r := Result{Node: n.Name, Check: "nics", Limit: fmt.Sprintf(">= %d up and addressed as the spec says (%s)", m.NICs, n.Role+" minimum")}
	if links.Err != nil {
		r.Status, r.Value = Fail, "not measured: "+errText(links.Err)
		return r
	}
	good := 0
	var ok, bad []string
	for _, want := range n.Interfaces {
		i := slices.IndexFunc(links.V, func(l link) bool { return l.Name == want.Name })
		switch {
		case i < 0:
			bad = append(bad, fmt.Sprintf("%s (%s) missing", want.Name, want.Network))
		case !links.V[i].Up:
			bad = append(bad, fmt.Sprintf("%s (%s) down", want.Name, want.Network))
		case want.Address != "" && !slices.Contains(links.V[i].Addrs, want.Address):
			bad = append(bad, fmt.Sprintf("%s (%s) lacks %s", want.Name, want.Network, want.Address))
		default:
			good++
			desc := want.Name + " " + want.Network
			if want.Address != "" {
				desc += " " + want.Address
			}
			ok = append(ok, desc)
		}
	}
	r.Value = fmt.Sprintf("%d up and addressed", good)
	if len(ok) > 0 {
		r.Value += ": " + strings.Join(ok, ", ")
	}
	if len(bad) > 0 {
		r.Value += "; " + strings.Join(bad, "; ")
	}
	r.Status = OK
	if len(bad) > 0 || good < m.NICs {
		r.Status = Fail
	}
	return r
}

// judgeVirtualisation: the document runs lab nodes as VMs and warns that
// nested virtualisation without hardware acceleration makes instances
// slow. That matters where instances run, on compute nodes: a compute
// node without VT-x/AMD-V (a VM that does not pass it through, or a
// server with it off in the firmware) gets a warning, never a failure.
func judgeVirtualisation(nf *nodeFacts) Result {
	n := nf.Spec
	r := Result{Node: n.Name, Check: "virtualisation", Limit: "hardware-assisted virtualisation (vmx/svm) on compute nodes", Status: OK}
	if nf.CPU.Err != nil {
		r.Status, r.Value = Warn, "not measured: "+errText(nf.CPU.Err)
		return r
	}
	ci := nf.CPU.V
	hw := ""
	switch {
	case ci.VMX:
		hw = "vmx"
	case ci.SVM:
		hw = "svm"
	}
	what := "bare metal"
	if ci.Hypervisor {
		what = "VM"
	}
	if nf.DMI != "" {
		what += " (" + nf.DMI + ")"
	}
	switch {
	case hw != "" && ci.Hypervisor:
		r.Value = what + ", nested virtualisation available (" + hw + ")"
	case hw != "":
		r.Value = what + ", hardware virtualisation available (" + hw + ")"
	case !n.IsController():
		r.Status = Warn
		if ci.Hypervisor {
			r.Value = what + " without nested virtualisation (no vmx/svm): instances would run emulated, slowly"
		} else {
			r.Value = what + " without vmx/svm (off in the firmware?): instances would run emulated, slowly"
		}
	default:
		r.Value = what + " without vmx/svm: fine for a controller, no instances run here"
	}
	return r
}

// atLeast is OK when have >= want, else Fail.
func atLeast(have, want uint64) Status {
	if have >= want {
		return OK
	}
	return Fail
}

// worst returns the more severe verdict.
func worst(a, b Status) Status {
	rank := map[Status]int{OK: 0, Warn: 1, Fail: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// errText is an error on one line, cut to a readable length.
func errText(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 240 {
		s = s[:240] + "..."
	}
	return s
}
