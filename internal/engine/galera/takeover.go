package galera

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/plan"
)

// A host where apt installed mariadb-server runs the package's MariaDB:
// stand-alone (wsrep_on=OFF), with its port and system tables. That is no
// Galera node without quorum, and pc.bootstrap is no remedy for it: hastack
// stops it and makes the node a Galera node, unless it holds databases of
// someone's (then a join would overwrite them, and hastack refuses).

// userDatabasesSQL reads whether wsrep is on and the databases that are
// neither MariaDB's own nor empty of meaning.
const userDatabasesSQL = `SELECT @@wsrep_on;
SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN ('mysql','information_schema','performance_schema','sys');
`

// checkStandalone fills f.standalone and f.userDBs for a running node that
// answers and is not in a Primary component.
func checkStandalone(ctx context.Context, f *nodeFacts) error {
	out, err := SQL(ctx, f.node, userDatabasesSQL)
	if err != nil {
		return err
	}
	lines := strings.Split(out, "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) != "0" {
		return nil
	}
	f.standalone = true
	for _, l := range lines[1:] {
		if l = strings.TrimSpace(l); l != "" {
			f.userDBs = append(f.userDBs, l)
		}
	}
	return nil
}

// AnswerWait bounds how long the facts wait for a running MariaDB that does
// not answer yet: one that systemd restarted after a crash (Debian's unit
// has Restart=on-abnormal) is still starting, or rejoining by IST.
const AnswerWait = 90 * time.Second

// waitAnswer waits for a running node that does not answer: until it
// answers, stops, or AnswerWait is over.
func waitAnswer(ctx context.Context, f *nodeFacts) {
	end := time.Now().Add(AnswerWait)
	for f.running && f.statusErr != nil && time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		running, err := plan.Running(ctx, f.node, ServiceName)
		if err != nil {
			return
		}
		f.running = running
		if !running {
			f.status, f.statusErr = nil, nil
			return
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		f.status, f.statusErr = LocalStatus(qctx, f.node)
		cancel()
	}
}

// notAnswering is the error for a running node that did not answer within
// AnswerWait, naming its real log.
func notAnswering(ctx context.Context, f *nodeFacts) error {
	where, tail := plan.ServiceLog(ctx, f.node, ServiceName, 12)
	return fmt.Errorf("%s: mariadb runs but has not answered on %s for %s: %v; it may wait for a Primary component that no node can form (every controller restarted): stop mariadb on every controller that shows this and run 'hastack up' again, which starts the cluster in order. Its log (%s on the node) ends:\n%s", f.name, Socket, AnswerWait, f.statusErr, where, tail)
}

// standaloneSteps are the stops of stand-alone MariaDBs, or the refusal
// when one holds databases.
func standaloneSteps(running []*nodeFacts) (stop []*nodeFacts, err error) {
	var refuse []string
	for _, f := range running {
		if !f.standalone {
			continue
		}
		if len(f.userDBs) > 0 {
			refuse = append(refuse, fmt.Sprintf("%s runs a stand-alone MariaDB (wsrep_on=OFF) that holds databases %s", f.name, strings.Join(f.userDBs, ", ")))
			continue
		}
		stop = append(stop, f)
	}
	if len(refuse) > 0 {
		return nil, fmt.Errorf("%s: making it a Galera node would replace them with the cluster's copy; dump them, drop them (or move %s aside), and run 'hastack up' again. Nothing was changed", strings.Join(refuse, "; "), DataDir)
	}
	return stop, nil
}
