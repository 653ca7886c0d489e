package check

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// ErrLoginRefused is what Options.TryLogin returns, wrapped, when the
// server refused the login (as opposed to not answering).
var ErrLoginRefused = errors.New("login refused")

// mysqlAccessDenied is MariaDB's ER_ACCESS_DENIED_ERROR.
const mysqlAccessDenied = 1045

// tryLogin logs in to a MariaDB server over TCP as user with an empty
// password, as anyone on the management network could.
func tryLogin(ctx context.Context, address, user string) error {
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.User = "tcp", address, user
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	cfg.Logger = quietLogger{}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	err = db.PingContext(ctx)
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == mysqlAccessDenied {
		return fmt.Errorf("%w: %s", ErrLoginRefused, me.Message)
	}
	return err
}

// quietLogger keeps the driver from logging connection trouble to stderr:
// every error is returned and reported as a result.
type quietLogger struct{}

func (quietLogger) Print(...any) {}

// judgeDatabasePassword: the database must refuse root and anonymous
// logins without a password from the management network, and hold no
// enabled account without one.
func judgeDatabasePassword(nf *nodeFacts) Result {
	r := Result{Node: nf.Spec.Name, Check: "database password", Limit: "root and anonymous logins without a password refused; no account without one"}
	switch {
	case nf.ServicesErr != nil:
		r.Status, r.Value = Fail, "not measured: "+unreachable(nf)
		return r
	case !nf.deployed(svcMariaDB):
		r.Status, r.Value = OK, "not deployed yet"
		return r
	}
	var in, unknown, refused []string
	for _, user := range []string{"root", ""} {
		who := user
		if who == "" {
			who = "anonymous"
		}
		err, ok := nf.Logins.V[user]
		switch {
		case !ok:
			unknown = append(unknown, who+": not tried")
		case err == nil:
			in = append(in, who)
		case errors.Is(err, ErrLoginRefused):
			refused = append(refused, who)
		default:
			unknown = append(unknown, who+": "+errText(err))
		}
	}
	var pw []string
	if nf.Galera.Done && nf.Galera.Err == nil {
		pw = nf.Galera.V.Passwordless
	}
	var problems []string
	if len(in) > 0 {
		problems = append(problems, strings.Join(in, " and ")+" logged in over TCP without a password")
	}
	if len(pw) > 0 {
		problems = append(problems, "accounts without a password: "+strings.Join(pw, ", "))
	}
	switch {
	case len(problems) > 0:
		r.Status, r.Value = Fail, strings.Join(problems, "; ")
	case len(unknown) > 0:
		r.Status, r.Value = Warn, "could not try: "+strings.Join(unknown, "; ")
	default:
		r.Status, r.Value = OK, strings.Join(refused, " and ")+" refused without a password"
		if nf.Galera.Done && nf.Galera.Err == nil && !nf.Galera.V.FromGrastate {
			r.Value += "; no account without one"
		}
	}
	return r
}

// judgeGuest: RabbitMQ's default guest/guest administrator must be gone.
// Users are cluster-wide, so one management API's answer is the cluster's.
func judgeGuest(f *facts) Result {
	r := Result{Node: ClusterNode, Check: "rabbitmq guest", Limit: "no guest user"}
	switch {
	case !f.Rabbit.Done:
		r.Status, r.Value = OK, "RabbitMQ not deployed yet"
	case f.Rabbit.Err != nil:
		r.Status, r.Value = Warn, "not measured: "+errText(f.Rabbit.Err)
	case f.Rabbit.V.GuestUser:
		r.Status, r.Value = Fail, "the guest user exists (default password guest, administrator)"
	default:
		r.Status, r.Value = OK, "absent"
	}
	return r
}
