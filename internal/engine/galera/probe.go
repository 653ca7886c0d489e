package galera

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Probe timeouts. A probe runs every second or so (HAProxy's check interval,
// 'hastack status' over every controller), so it must answer fast or not at
// all: a database that takes longer than this to accept a connection is not
// one that should receive writes.
const (
	DefaultConnectTimeout = 1 * time.Second
	DefaultIOTimeout      = 2 * time.Second
)

// Values of the wsrep status variables the probe judges by.
const (
	ClusterPrimary = "Primary" // wsrep_cluster_status of a node in the quorate component
	StateSynced    = "Synced"  // wsrep_local_state_comment of a node that serves queries
	StateDonor     = "Donor/Desynced"
)

// ProbeOptions says how to reach one MariaDB server. Exactly one of Address
// and Socket is set.
type ProbeOptions struct {
	// Address is host:port over TCP, e.g. "10.77.0.11:3306".
	Address string
	// Socket is the path of the server's unix socket, e.g. galera.Socket.
	Socket string
	// User and Password authenticate the probe. Over the unix socket, root
	// with an empty password authenticates by unix_socket (the OS user of
	// the probing process), so no password is needed on the node itself.
	User     string
	Password string
	// ConnectTimeout bounds the dial; default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// IOTimeout bounds each read and write once connected (the handshake
	// included); default DefaultIOTimeout.
	IOTimeout time.Duration
}

// Status is what one Galera node says of itself and of its cluster.
type Status struct {
	// Healthy: the node belongs to the Primary component, is Synced and
	// accepts queries (wsrep_ready). Only such a node may take writes.
	Healthy bool `json:"healthy"`
	// Problem says why the node is not healthy; empty when it is.
	Problem string `json:"problem,omitempty"`
	// Address is where the node was asked (address:port or socket path).
	Address string `json:"address"`

	ClusterSize      int    `json:"clusterSize"`      // wsrep_cluster_size: nodes in this node's component
	ClusterStatus    string `json:"clusterStatus"`    // wsrep_cluster_status: Primary, non-Primary or Disconnected
	ClusterStateUUID string `json:"clusterStateUUID"` // wsrep_cluster_state_uuid: equal on every node of one cluster history
	LocalState       string `json:"localState"`       // wsrep_local_state_comment: Synced, Donor/Desynced, Joining, Joined, ...
	Ready            bool   `json:"ready"`            // wsrep_ready: the node accepts queries
	Connected        bool   `json:"connected"`        // wsrep_connected: the provider is connected to the group
	// FlowControlPaused is the fraction of time since the last FLUSH STATUS
	// that replication was paused by flow control (0..1): a node near 1
	// cannot keep up and slows the whole cluster's commits.
	FlowControlPaused float64 `json:"flowControlPaused"`
	// LocalRecvQueue is the number of write-sets received but not yet
	// applied here; a growing queue is what triggers flow control.
	LocalRecvQueue int `json:"localRecvQueue"`
	// ReadOnly is @@global.read_only: writes sent here would be refused.
	ReadOnly bool `json:"readOnly"`
}

// Probe asks one node for its wsrep status (SHOW GLOBAL STATUS in one round
// trip) and its read_only flag, over one short-lived connection.
//
// The returned Status always carries a Problem when the node is not healthy.
// The error is non-nil only when the node could not be asked at all (down,
// refusing the login, timed out); the Status then says so in Problem too, so
// a caller that only reports may ignore the error.
func Probe(ctx context.Context, o ProbeOptions) (Status, error) {
	st := Status{Address: o.where()}
	db, err := open(o)
	if err != nil {
		st.Problem = err.Error()
		return st, err
	}
	defer db.Close()

	vars, readOnly, err := query(ctx, db)
	if err != nil {
		err = fmt.Errorf("galera probe %s: %w", st.Address, err)
		st.Problem = err.Error()
		return st, err
	}
	st = statusFromVars(st.Address, vars)
	st.ReadOnly = readOnly
	return st, nil
}

func (o ProbeOptions) where() string {
	if o.Socket != "" {
		return o.Socket
	}
	return o.Address
}

// open prepares a pool of at most one connection; nothing is dialled yet.
func open(o ProbeOptions) (*sql.DB, error) {
	if (o.Address == "") == (o.Socket == "") {
		return nil, errors.New("galera probe: set exactly one of Address and Socket")
	}
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr = "tcp", o.Address
	if o.Socket != "" {
		cfg.Net, cfg.Addr = "unix", o.Socket
	}
	cfg.User, cfg.Passwd = o.User, o.Password
	cfg.Timeout = o.ConnectTimeout
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultConnectTimeout
	}
	cfg.ReadTimeout = o.IOTimeout
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultIOTimeout
	}
	cfg.WriteTimeout = cfg.ReadTimeout
	// The driver logs connection trouble to stderr by default; the probe
	// returns every error instead, so a down node does not also spam the
	// log of whoever polls it (the health agent polls every second).
	cfg.Logger = quietLogger{}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("galera probe: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	return db, nil
}

type quietLogger struct{}

func (quietLogger) Print(...any) {}

// query runs the two statements on one connection: the status in one round
// trip, then the read_only flag (a variable, which SHOW STATUS does not show).
func query(ctx context.Context, db *sql.DB) (map[string]string, bool, error) {
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL STATUS LIKE 'wsrep_%'")
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	vars := make(map[string]string, 80)
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return nil, false, err
		}
		vars[strings.ToLower(name)] = value
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	var readOnly bool
	if err := db.QueryRowContext(ctx, "SELECT @@global.read_only").Scan(&readOnly); err != nil {
		return nil, false, err
	}
	return vars, readOnly, nil
}

// statusFromVars judges a node from its wsrep status variables (names in
// lower case). It is the whole of the probe's logic, kept free of I/O so that
// captured server output tests it.
func statusFromVars(address string, vars map[string]string) Status {
	st := Status{
		Address:          address,
		ClusterStatus:    vars["wsrep_cluster_status"],
		ClusterStateUUID: vars["wsrep_cluster_state_uuid"],
		LocalState:       vars["wsrep_local_state_comment"],
		Ready:            strings.EqualFold(vars["wsrep_ready"], "ON"),
		Connected:        strings.EqualFold(vars["wsrep_connected"], "ON"),
	}
	st.ClusterSize, _ = strconv.Atoi(vars["wsrep_cluster_size"])
	st.LocalRecvQueue, _ = strconv.Atoi(vars["wsrep_local_recv_queue"])
	st.FlowControlPaused, _ = strconv.ParseFloat(vars["wsrep_flow_control_paused"], 64)

	switch {
	case vars["wsrep_provider_name"] == "":
		// A server without the Galera library loaded still shows a few
		// wsrep_ variables (Disconnected, not ready) but no provider: it
		// is a standalone MariaDB, and no restart of the cluster helps.
		st.Problem = "Galera is not loaded on this server (wsrep_on=OFF or no wsrep_provider)"
	case !st.Connected:
		st.Problem = "not connected to the cluster (wsrep_connected=OFF)"
	case st.ClusterStatus != ClusterPrimary:
		st.Problem = fmt.Sprintf("not in the Primary component (wsrep_cluster_status=%s, cluster size %d): it lost quorum and refuses queries", st.ClusterStatus, st.ClusterSize)
	case st.LocalState != StateSynced:
		st.Problem = fmt.Sprintf("not Synced (wsrep_local_state_comment=%s)", st.LocalState)
	case !st.Ready:
		st.Problem = "not ready for queries (wsrep_ready=OFF)"
	default:
		st.Healthy = true
	}
	return st
}
