package galera

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/secrets"
)

// A recovery of a cluster with no Primary component chooses the node every
// other node will copy. That choice is written down before anything is
// started, on the machine running hastack and on the chosen node, so that
// a recovery interrupted half-way (hastack killed, the machine lost)
// resumes with the same node, never with a new choice made from positions
// the interrupted run has already changed.

// NodeRecordPath is where a controller keeps the recovery decision.
const NodeRecordPath = "/var/lib/hastack/galera-recovery.json"

// RecordPath is where the machine running hastack keeps it: beside the
// spec, as the secrets are (hastack.yaml -> hastack.galera-recovery.json).
func RecordPath(specPath string) string {
	return strings.TrimSuffix(specPath, filepath.Ext(specPath)) + ".galera-recovery.json"
}

// Position is one node's place in the cluster's history.
type Position struct {
	Node  string `json:"node"`
	UUID  string `json:"uuid,omitempty"`
	Seqno int64  `json:"seqno"`
	// Source says how it is known: grastate (a clean stop), wsrep-recover
	// (InnoDB after a crash), wsrep_last_committed (a running node), or
	// unknown (the node could not be asked).
	Source string `json:"source"`
	Err    string `json:"error,omitempty"`
}

func (p Position) String() string {
	if p.Source == "unknown" {
		return fmt.Sprintf("%s unknown (%s)", p.Node, p.Err)
	}
	return fmt.Sprintf("%s %s:%d (%s)", p.Node, p.UUID, p.Seqno, p.Source)
}

// Record is a recovery decision, written before it is acted on.
type Record struct {
	Cluster   string     `json:"cluster"`
	UUID      string     `json:"uuid"`
	Chosen    string     `json:"chosen"`
	Why       string     `json:"why"`
	Positions []Position `json:"positions"`
	Decided   time.Time  `json:"decided"`
}

// Choose picks the node to bootstrap from among the positions: the most
// advanced of those sharing the cluster's history (ties: the first in
// spec order), or the operator's named node. It refuses when a position
// is unknown, unless a node is named and yes confirms; a named node
// behind another needs yes too, and the answer says what would be lost.
func Choose(pos []Position, uuid, named string, yes bool) (chosen, why string, err error) {
	var unknown []string
	best := -1
	for i, p := range pos {
		switch {
		case p.Source == "unknown":
			unknown = append(unknown, p.String())
		case p.UUID != uuid:
			// Never a candidate: Decide refused foreign histories already;
			// a wiped node has no position at all.
		case best < 0 || p.Seqno > pos[best].Seqno:
			best = i
		}
	}
	if named == "" {
		if len(unknown) > 0 {
			return "", "", &Refusal{
				Problem: "the position of " + strings.Join(unknown, ", ") + " cannot be established, so the most advanced node is unknown",
				Remedy:  "bring the node back; or, if it is gone for good, name the node to bootstrap with --bootstrap-node NODE --yes (what the unknown node held beyond it is lost)",
			}
		}
		if best < 0 {
			return "", "", &Refusal{Problem: "no node holds a position of cluster " + uuid, Remedy: "nothing can be recovered from these nodes"}
		}
		var others []string
		for _, p := range pos {
			if p.Node != pos[best].Node {
				others = append(others, fmt.Sprintf("%s %d", p.Node, p.Seqno))
			}
		}
		if len(others) == 0 {
			return pos[best].Node, fmt.Sprintf("the only node with a position: seqno %d", pos[best].Seqno), nil
		}
		return pos[best].Node, fmt.Sprintf("most advanced: seqno %d (others: %s)", pos[best].Seqno, strings.Join(others, ", ")), nil
	}
	i := slices.IndexFunc(pos, func(p Position) bool { return p.Node == named })
	if i < 0 || pos[i].Source == "unknown" || pos[i].UUID != uuid {
		return "", "", &Refusal{Problem: "--bootstrap-node " + named + " has no known position in cluster " + uuid, Remedy: "name a node whose position was recovered"}
	}
	var ahead []string
	for _, p := range pos {
		if p.Source != "unknown" && p.UUID == uuid && p.Seqno > pos[i].Seqno {
			ahead = append(ahead, fmt.Sprintf("%s is %d transaction(s) ahead (seqno %d)", p.Node, p.Seqno-pos[i].Seqno, p.Seqno))
		}
	}
	loss := ""
	if len(ahead) > 0 {
		loss = "; what the others committed beyond it is lost: " + strings.Join(ahead, ", ")
	}
	if len(unknown) > 0 {
		loss += "; unknown: " + strings.Join(unknown, ", ") + " (whatever it held beyond seqno " + strconv.FormatInt(pos[i].Seqno, 10) + " is lost)"
	}
	if loss != "" && !yes {
		return "", "", &Refusal{Problem: "bootstrapping from " + named + loss, Remedy: "run again with --yes to accept that, or without --bootstrap-node to use the most advanced node"}
	}
	return named, fmt.Sprintf("named by the operator: seqno %d%s", pos[i].Seqno, loss), nil
}

// recordStore reads and writes a recovery record on this machine and on
// the controllers.
type recordStore struct {
	local string // "" when hastack knows no spec path (tests)
	nodes map[string]node.Node
}

func (rs recordStore) load(ctx context.Context, cluster string) (*Record, error) {
	var found []*Record
	var where []string
	read := func(data []byte, from string) error {
		var r Record
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("recovery record %s: %w (move it aside if the recovery it describes is over)", from, err)
		}
		if r.Cluster != cluster {
			return nil
		}
		found, where = append(found, &r), append(where, from)
		return nil
	}
	if rs.local != "" {
		data, err := os.ReadFile(rs.local)
		if err == nil {
			if err := read(data, rs.local); err != nil {
				return nil, err
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	for _, name := range sortedKeys(rs.nodes) {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		data, err := rs.nodes[name].ReadFile(rctx, NodeRecordPath)
		cancel()
		if err == nil {
			if err := read(data, name+":"+NodeRecordPath); err != nil {
				return nil, err
			}
		}
	}
	if len(found) == 0 {
		return nil, nil
	}
	for i, r := range found {
		if r.Chosen != found[0].Chosen || r.UUID != found[0].UUID {
			return nil, &Refusal{
				Problem: fmt.Sprintf("two recovery records disagree: %s chose %s, %s chose %s", where[0], found[0].Chosen, where[i], r.Chosen),
				Remedy:  "two recoveries ran at once, or a record is left from another; look at both, remove the wrong one and run again",
			}
		}
	}
	return found[0], nil
}

// save writes the record here (durably: synced, then renamed) and on the
// chosen node, before anything is started.
func (rs recordStore) save(ctx context.Context, r Record) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if rs.local != "" {
		if err := secrets.WriteFileAtomic(rs.local, data, 0o600); err != nil {
			return fmt.Errorf("writing the recovery decision to %s: %w; nothing was started", rs.local, err)
		}
	}
	n := rs.nodes[r.Chosen]
	if err := n.WriteFile(ctx, NodeRecordPath, data, 0o600, ""); err != nil {
		return fmt.Errorf("writing the recovery decision to %s:%s: %w; nothing was started", r.Chosen, NodeRecordPath, err)
	}
	_, _ = n.Run(ctx, node.Cmd{Argv: []string{"sync"}})
	return nil
}

// clear removes every copy once the cluster runs again.
func (rs recordStore) clear(ctx context.Context) error {
	if rs.local != "" {
		if err := os.Remove(rs.local); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	var errs []error
	for _, name := range sortedKeys(rs.nodes) {
		if _, err := rs.nodes[name].Run(ctx, node.Cmd{Argv: []string{"rm", "-f", NodeRecordPath}}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func sortedKeys(m map[string]node.Node) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// recordsFor is the record store of a target's reachable controllers.
func recordsFor(t *plan.Target, facts []*nodeFacts) recordStore {
	rs := recordStore{nodes: map[string]node.Node{}}
	if t.SpecPath != "" {
		rs.local = RecordPath(t.SpecPath)
	}
	for _, f := range facts {
		if f.unreachable == nil {
			rs.nodes[f.name] = f.node
		}
	}
	return rs
}

// positions establishes every node's position, in parallel: from
// grastate.dat after a clean stop, from InnoDB (mariadbd --wsrep-recover)
// after a crash. A node that cannot be asked is "unknown".
func positions(ctx context.Context, t *plan.Target, facts []*nodeFacts) []Position {
	out := make([]Position, len(facts))
	names := make([]string, len(facts))
	for i, f := range facts {
		names[i] = f.name
	}
	_ = plan.ForEach(ctx, names, func(ctx context.Context, name string) error {
		i := slices.Index(names, name)
		f := facts[i]
		p := Position{Node: name}
		switch {
		case f.unreachable != nil:
			p.Source, p.Err = "unknown", f.unreachable.Error()
		case !f.hasGra || f.gra.Fresh():
			p.Source, p.Err = "unknown", "no Galera state (never joined, or wiped)"
		case f.gra.Seqno >= 0:
			p.UUID, p.Seqno, p.Source = f.gra.UUID, f.gra.Seqno, "grastate"
		default:
			pos, err := RecoverPosition(ctx, f.node)
			if err != nil {
				p.Source, p.Err = "unknown", err.Error()
				break
			}
			uuid, seq, _ := strings.Cut(pos, ":")
			n, err := strconv.ParseInt(seq, 10, 64)
			if err != nil {
				p.Source, p.Err = "unknown", fmt.Sprintf("recovered position %q has no seqno", pos)
				break
			}
			p.UUID, p.Seqno, p.Source = uuid, n, "wsrep-recover"
		}
		if p.Source != "unknown" {
			t.Say("galera", name, "position %s:%d (%s)", p.UUID, p.Seqno, p.Source)
		} else {
			t.Say("galera", name, "position unknown: %s", p.Err)
		}
		out[i] = p
		return nil
	})
	return out
}

// LeftoverRecords describes every recovery record present, here (beside
// specPath, when set) and on the controllers: a record outlives its
// recovery only when that recovery was interrupted. Each line says where
// the record is and what it decided. A controller that cannot be read in
// time is left out: status and check report it on their own.
func LeftoverRecords(ctx context.Context, specPath string, ctls map[string]node.Node) []string {
	describe := func(where string, data []byte) string {
		var r Record
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Sprintf("%s: a Galera recovery record that cannot be read (%v)", where, err)
		}
		return fmt.Sprintf("%s: a Galera recovery decided at %s to bootstrap from %s (%s) did not finish; 'hastack recover galera' resumes it, and removes the record once every node runs", where, r.Decided.Format(time.RFC3339), r.Chosen, r.Why)
	}
	var out []string
	if specPath != "" {
		if data, err := os.ReadFile(RecordPath(specPath)); err == nil {
			out = append(out, describe(RecordPath(specPath), data))
		}
	}
	names := sortedKeys(ctls)
	found := make([]string, len(names))
	_ = plan.ForEach(ctx, names, func(ctx context.Context, name string) error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if data, err := ctls[name].ReadFile(rctx, NodeRecordPath); err == nil {
			found[slices.Index(names, name)] = describe(name+":"+NodeRecordPath, data)
		}
		return nil
	})
	for _, f := range found {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}
