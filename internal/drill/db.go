package drill

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

// DBOptions place the database workload: the VIP endpoint and a user that
// may create a schema.
type DBOptions struct {
	Addr     string // VIP:port
	User     string
	Password string
	// Schema the workload owns; it is dropped and created at setup.
	Schema string
	// Accounts in the bank, each starting with Balance.
	Accounts int
	Balance  int64
	// Workers per kind of operation, and the pause between operations.
	Inserters, Transferers, Readers int
	Pause                           time.Duration
}

func (o DBOptions) withDefaults() DBOptions {
	if o.Schema == "" {
		o.Schema = "hastack_drill"
	}
	if o.Accounts == 0 {
		o.Accounts = 10
	}
	if o.Balance == 0 {
		o.Balance = 1000
	}
	if o.Inserters == 0 {
		o.Inserters = 2
	}
	if o.Transferers == 0 {
		o.Transferers = 2
	}
	if o.Readers == 0 {
		o.Readers = 1
	}
	if o.Pause == 0 {
		o.Pause = 20 * time.Millisecond
	}
	return o
}

// DB is the database workload: a bank of accounts with concurrent transfers
// (the total never changes, and no read of the total may see it change),
// and an insert-only ledger (every acknowledged row must be there at the
// end), all through the VIP as OpenStack services connect. It retries 1213
// (deadlock, certification failure) and 1047 (WSREP not ready). A write
// whose acknowledgement was lost is outcome-unknown and resolved at
// verification.
type DB struct {
	o     DBOptions
	db    *sql.DB
	rec   *Recorder
	nonce string

	mu       sync.Mutex
	badReads []Evidence
}

func (o DBOptions) dsn(schema string) string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = o.User, o.Password, "tcp", o.Addr, schema
	// The client timeouts of the measurements: 1 s to connect,
	// 2 s for a read or a write.
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = time.Second, 2*time.Second, 2*time.Second
	return cfg.FormatDSN()
}

// NewDB sets the schema up (dropped and created) and returns the workload.
func NewDB(ctx context.Context, o DBOptions, rec *Recorder) (*DB, error) {
	o = o.withDefaults()
	// The driver logs every broken connection to stderr; the drill
	// records them as operations instead.
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
	admin, err := sql.Open("mysql", o.dsn(""))
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	stmts := []string{
		"DROP DATABASE IF EXISTS " + o.Schema,
		"CREATE DATABASE " + o.Schema,
		"CREATE TABLE " + o.Schema + ".accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB",
		"CREATE TABLE " + o.Schema + ".ledger (id VARCHAR(64) PRIMARY KEY, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
	}
	var vals []string
	for i := 0; i < o.Accounts; i++ {
		vals = append(vals, fmt.Sprintf("(%d,%d)", i, o.Balance))
	}
	stmts = append(stmts, "INSERT INTO "+o.Schema+".accounts VALUES "+strings.Join(vals, ","))
	for _, s := range stmts {
		if err := retrySetup(ctx, func(ctx context.Context) error { _, err := admin.ExecContext(ctx, s); return err }); err != nil {
			return nil, fmt.Errorf("database workload setup through %s: %s: %w", o.Addr, s, err)
		}
	}
	db, err := sql.Open("mysql", o.dsn(o.Schema))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(o.Inserters + o.Transferers + o.Readers + 2)
	db.SetMaxIdleConns(o.Inserters + o.Transferers + o.Readers + 2)
	return &DB{o: o, db: db, rec: rec, nonce: strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + strconv.Itoa(os.Getpid())}, nil
}

func retrySetup(ctx context.Context, f func(context.Context) error) error {
	var err error
	for i := 0; i < 10; i++ {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = f(c)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
	return err
}

// Expected is the bank's invariant total.
func (d *DB) Expected() int64 { return int64(d.o.Accounts) * d.o.Balance }

// Run runs every worker until ctx ends.
func (d *DB) Run(ctx context.Context) {
	var wg sync.WaitGroup
	loop := func(f func(ctx context.Context, i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				f(ctx, i)
				select {
				case <-ctx.Done():
				case <-time.After(d.o.Pause):
				}
			}
		}()
	}
	for w := 0; w < d.o.Inserters; w++ {
		w := w
		loop(func(ctx context.Context, i int) { d.insert(ctx, fmt.Sprintf("%s-%d-%d", d.nonce, w, i)) })
	}
	for w := 0; w < d.o.Transferers; w++ {
		loop(func(ctx context.Context, i int) { d.transfer(ctx) })
	}
	for w := 0; w < d.o.Readers; w++ {
		loop(func(ctx context.Context, i int) { d.readTotal(ctx) })
	}
	wg.Wait()
}

// classify says whether err certainly means "not done" (Failed) or may
// hide a commit (Unknown), and names its kind.
func classify(err error) (outcome, kind string) {
	var me *mysql.MySQLError
	var ne *net.OpError
	switch {
	case errors.As(err, &me):
		return Failed, strconv.Itoa(int(me.Number))
	case errors.As(err, &ne) && ne.Op == "dial":
		if strings.Contains(ne.Error(), "refused") {
			return Failed, "connect refused"
		}
		return Failed, "connect timeout"
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || strings.Contains(err.Error(), "i/o timeout"):
		return Unknown, "timeout"
	case errors.Is(err, mysql.ErrInvalidConn):
		return Unknown, "invalid connection"
	}
	return Unknown, "other"
}

func retryable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1047)
}

// attempt runs f, retrying 1213 and 1047 up to 5 times, within one
// operation of at most 10 s.
func (d *DB) attempt(ctx context.Context, id string, read bool, f func(ctx context.Context) error) {
	start := d.rec.Begin()
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	retries := 0
	for {
		err := f(octx)
		if err == nil {
			d.rec.add(Op{Start: start, End: d.rec.Now(), Outcome: OK, ID: id, Retries: retries, Read: read})
			return
		}
		if ctx.Err() != nil {
			// The run ended under the operation: it is neither
			// acknowledged nor failed by the layer.
			d.rec.add(Op{Start: start, End: d.rec.Now(), Outcome: Blocked, Kind: "blocked", ID: id, Retries: retries, Read: read})
			return
		}
		if retryable(err) && retries < 5 {
			retries++
			time.Sleep(100 * time.Millisecond)
			continue
		}
		outcome, kind := classify(err)
		d.rec.add(Op{Start: start, End: d.rec.Now(), Outcome: outcome, Kind: kind, ID: id, Retries: retries, Read: read})
		return
	}
}

func (d *DB) insert(ctx context.Context, id string) {
	d.attempt(ctx, id, false, func(ctx context.Context) error {
		_, err := d.db.ExecContext(ctx, "INSERT INTO ledger (id) VALUES (?)", id)
		var me *mysql.MySQLError
		if errors.As(err, &me) && me.Number == 1062 {
			// A retry after a lost acknowledgement found its own row.
			return nil
		}
		return err
	})
}

func (d *DB) transfer(ctx context.Context) {
	a, b := rand.IntN(d.o.Accounts), rand.IntN(d.o.Accounts-1)
	if b >= a {
		b++
	}
	lo, hi := min(a, b), max(a, b)
	amount := rand.Int64N(50) + 1
	d.attempt(ctx, "", false, func(ctx context.Context) error {
		tx, err := d.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		// Lock in id order: no deadlock between the workload's own
		// transfers.
		if _, err := tx.ExecContext(ctx, "SELECT balance FROM accounts WHERE id IN (?, ?) ORDER BY id FOR UPDATE", lo, hi); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance - ? WHERE id = ?", amount, a); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance + ? WHERE id = ?", amount, b); err != nil {
			return err
		}
		return tx.Commit()
	})
}

func (d *DB) readTotal(ctx context.Context) {
	d.attempt(ctx, "", true, func(ctx context.Context) error {
		var total int64
		if err := d.db.QueryRowContext(ctx, "SELECT SUM(balance) FROM accounts").Scan(&total); err != nil {
			return err
		}
		if total != d.Expected() {
			d.mu.Lock()
			d.badReads = append(d.badReads, Evidence{ID: "bank-read", At: d.rec.Now(), What: fmt.Sprintf("a read of the bank total saw %d, want %d", total, d.Expected())})
			d.mu.Unlock()
		}
		return nil
	})
}

// Verify reads the ledger and the bank back (retrying for up to a minute)
// and resolves every outcome-unknown write.
func (d *DB) Verify(ctx context.Context) WorkloadRecord {
	ops := d.rec.Ops()
	loss := &DBLoss{BankExpected: d.Expected()}
	d.mu.Lock()
	loss.BadReads = append(loss.BadReads, d.badReads...)
	d.mu.Unlock()
	present := map[string]bool{}
	err := retrySetup(ctx, func(ctx context.Context) error {
		rows, err := d.db.QueryContext(ctx, "SELECT id FROM ledger")
		if err != nil {
			return err
		}
		defer rows.Close()
		got := map[string]bool{}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			got[id] = true
		}
		if err := rows.Err(); err != nil {
			return err
		}
		present = got
		return d.db.QueryRowContext(ctx, "SELECT SUM(balance) FROM accounts").Scan(&loss.BankTotal)
	})
	if err != nil {
		loss.VerifyError = err.Error()
		return WorkloadRecord{Name: "db", Ops: ops, DB: loss}
	}
	loss.Verified = true
	loss.Acked, loss.Unknown, loss.UnknownCommitted, loss.Lost = LedgerCheck(ops, present)
	return WorkloadRecord{Name: "db", Ops: ops, DB: loss}
}

// Close drops the workload's schema and closes its connections.
func (d *DB) Close(ctx context.Context) {
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, _ = d.db.ExecContext(c, "DROP DATABASE IF EXISTS "+d.o.Schema)
	d.db.Close()
}
