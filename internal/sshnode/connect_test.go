package sshnode

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/hastack/hastack/internal/node"
)

// testServer is an SSH server on loopback, in this process: enough of sshd
// to test connecting, host keys, authentication and exec.
type testServer struct {
	t        *testing.T
	ln       net.Listener
	cfg      *ssh.ServerConfig
	hostKeys []ssh.Signer
	conns    atomic.Int32 // TCP connections accepted
	open     atomic.Int32 // SSH connections open now
	// handle runs one exec request and returns its exit status.
	handle func(cmd string, stdin io.Reader, stdout, stderr io.Writer, closed <-chan struct{}) uint32
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeKey writes a signer's private key in OpenSSH format.
func writeKey(t *testing.T, path string, priv any) {
	t.Helper()
	b, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

func startServer(t *testing.T, authorized ssh.PublicKey, hostKeys ...ssh.Signer) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{t: t, ln: ln, hostKeys: hostKeys}
	s.cfg = &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(authorized.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("not authorized")
	}}
	for _, k := range hostKeys {
		s.cfg.AddHostKey(k)
	}
	s.handle = func(cmd string, _ io.Reader, stdout, _ io.Writer, _ <-chan struct{}) uint32 {
		io.WriteString(stdout, cmd)
		return 0
	}
	go s.serve()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *testServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *testServer) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.conns.Add(1)
		go func() {
			sc, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
			if err != nil {
				c.Close()
				return
			}
			s.open.Add(1)
			defer s.open.Add(-1)
			go ssh.DiscardRequests(reqs)
			for nc := range chans {
				if nc.ChannelType() != "session" {
					nc.Reject(ssh.UnknownChannelType, "no")
					continue
				}
				ch, creqs, err := nc.Accept()
				if err != nil {
					continue
				}
				go s.session(ch, creqs)
			}
			sc.Wait()
		}()
	}
}

func (s *testServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	closed := make(chan struct{})
	for r := range reqs {
		switch r.Type {
		case "exec":
			var p struct{ Cmd string }
			ssh.Unmarshal(r.Payload, &p)
			r.Reply(true, nil)
			go func() {
				// Signals and the channel's close both end a command.
				for r := range reqs {
					if r.Type == "signal" {
						select {
						case <-closed:
						default:
							close(closed)
						}
					}
					r.Reply(false, nil)
				}
			}()
			code := s.handle(p.Cmd, ch, ch, ch.Stderr(), closed)
			var st [4]byte
			binary.BigEndian.PutUint32(st[:], code)
			ch.SendRequest("exit-status", false, st[:])
			return
		default:
			r.Reply(false, nil)
		}
	}
}

// fixture is a client key, a known_hosts file and a pool to reach a test
// server.
type fixture struct {
	dir, key, known string
	signer          ssh.Signer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key := filepath.Join(dir, "id_ed25519")
	writeKey(t, key, priv)
	s, _ := ssh.NewSignerFromKey(priv)
	return &fixture{dir: dir, key: key, known: filepath.Join(dir, "known_hosts"), signer: s}
}

func (f *fixture) config(s *testServer) Config {
	return Config{Name: "ctl1", Address: "127.0.0.1", Host: "127.0.0.1", Port: s.port(), User: "root", IdentityFile: f.key, KnownHosts: f.known}
}

func (f *fixture) trust(t *testing.T, port int, k ssh.PublicKey) {
	t.Helper()
	line := knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort("127.0.0.1", itoa(port)))}, k)
	fh, err := os.OpenFile(f.known, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteString(line + "\n")
	fh.Close()
}

func itoa(i int) string { return strconv.Itoa(i) }

func quickPool() *Pool {
	return NewPool(Options{ConnectTimeout: 2 * time.Second, ConnectAttempts: 2, IdleTimeout: time.Minute})
}

func hostname(t *testing.T, n *Node) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := n.Run(ctx, node.Cmd{Argv: []string{"hostname"}})
	return string(res.Stdout), err
}

func TestUnknownHostKeyRefused(t *testing.T) {
	f := newFixture(t)
	s := startServer(t, f.signer.PublicKey(), newSigner(t))
	n, _ := quickPool().Node(f.config(s))
	_, err := hostname(t, n)
	var hk *HostKeyError
	if !errors.As(err, &hk) || len(hk.Known) > 0 {
		t.Fatalf("want an unknown host key error, got %v", err)
	}
	for _, want := range []string{"ctl1: root@127.0.0.1:", "host key is not known", ssh.FingerprintSHA256(s.hostKeys[0].PublicKey()), "acceptNewHostKeys"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if got := s.conns.Load(); got != 1 {
		t.Errorf("a refused host key was tried %d times; it is final", got)
	}
	if _, err := os.Stat(f.known); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("known_hosts was written without acceptNewHostKeys: %v", err)
	}
}

func TestAcceptNewHostKeyRecordsIt(t *testing.T) {
	f := newFixture(t)
	s := startServer(t, f.signer.PublicKey(), newSigner(t))
	cfg := f.config(s)
	cfg.AcceptNewHostKeys = true
	n, _ := quickPool().Node(cfg)
	if out, err := hostname(t, n); err != nil || !strings.HasSuffix(out, "hostname") {
		t.Fatalf("accept-new: %q %v", out, err)
	}
	data, err := os.ReadFile(f.known)
	if err != nil || !strings.Contains(string(data), "[127.0.0.1]:"+itoa(s.port())+" ssh-ed25519 ") {
		t.Fatalf("known_hosts after accept-new: %q %v", data, err)
	}
	// Now known: a pool that accepts nothing new connects.
	cfg.AcceptNewHostKeys = false
	n2, _ := quickPool().Node(cfg)
	if _, err := hostname(t, n2); err != nil {
		t.Errorf("recorded key not trusted: %v", err)
	}
}

func TestChangedHostKeyRefused(t *testing.T) {
	f := newFixture(t)
	s := startServer(t, f.signer.PublicKey(), newSigner(t))
	f.trust(t, s.port(), newSigner(t).PublicKey()) // what the host had before
	before, _ := os.ReadFile(f.known)
	cfg := f.config(s)
	cfg.AcceptNewHostKeys = true // never covers a changed key
	n, _ := quickPool().Node(cfg)
	_, err := hostname(t, n)
	var hk *HostKeyError
	if !errors.As(err, &hk) || len(hk.Known) == 0 {
		t.Fatalf("want a changed host key error, got %v", err)
	}
	for _, want := range []string{"HOST KEY CHANGED", f.known + " line 1", "ssh-keygen -R [127.0.0.1]:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if after, _ := os.ReadFile(f.known); string(after) != string(before) {
		t.Error("known_hosts changed")
	}
}

// A host with an RSA and an ed25519 key, known by its ed25519 key only:
// hastack asks for ed25519, so the RSA key is never mistaken for a change.
func TestKnownKeyTypeIsAskedFor(t *testing.T) {
	f := newFixture(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaSigner, _ := ssh.NewSignerFromKey(rsaKey)
	ed := newSigner(t)
	s := startServer(t, f.signer.PublicKey(), rsaSigner, ed)
	f.trust(t, s.port(), ed.PublicKey())
	n, _ := quickPool().Node(f.config(s))
	if _, err := hostname(t, n); err != nil {
		t.Fatalf("host known by its ed25519 key: %v", err)
	}
}

func TestKeyRefused(t *testing.T) {
	f := newFixture(t)
	s := startServer(t, newSigner(t).PublicKey(), newSigner(t)) // authorizes another key
	f.trust(t, s.port(), s.hostKeys[0].PublicKey())
	n, _ := quickPool().Node(f.config(s))
	_, err := hostname(t, n)
	if err == nil || !strings.Contains(err.Error(), "the host refused the key") || !strings.Contains(err.Error(), f.key) || !strings.HasPrefix(err.Error(), "ctl1: ") {
		t.Fatalf("want a refused key naming the host and the key file, got %v", err)
	}
	if got := s.conns.Load(); got != 1 {
		t.Errorf("a refused key was tried %d times; it is final", got)
	}
}

func TestUnreachableIsRetriedThenNamed(t *testing.T) {
	f := newFixture(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	n, _ := quickPool().Node(Config{Name: "ctl9", Address: "127.0.0.1", Host: "127.0.0.1", Port: port, User: "root", IdentityFile: f.key, KnownHosts: f.known})
	start := time.Now()
	_, err := hostname(t, n)
	if err == nil || !strings.Contains(err.Error(), "ctl9: root@127.0.0.1:") || !strings.Contains(err.Error(), "after 2 attempts") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) < time.Second {
		t.Error("no pause between attempts")
	}
}

func TestRunResultsAndErrors(t *testing.T) {
	f := newFixture(t)
	s := startServer(t, f.signer.PublicKey(), newSigner(t))
	f.trust(t, s.port(), s.hostKeys[0].PublicKey())
	s.handle = func(cmd string, stdin io.Reader, stdout, stderr io.Writer, closed <-chan struct{}) uint32 {
		switch {
		case strings.HasSuffix(cmd, " fail"):
			io.WriteString(stderr, "it broke\n")
			return 3
		case strings.HasSuffix(cmd, " cat"):
			io.Copy(stdout, stdin)
			return 0
		case strings.HasSuffix(cmd, " hang"):
			<-closed
			return 143
		}
		io.WriteString(stdout, cmd)
		return 0
	}
	n, _ := quickPool().Node(f.config(s))
	ctx := context.Background()
	res, err := n.Run(ctx, node.Cmd{Argv: []string{"fail"}})
	var ce *node.CommandError
	if !errors.As(err, &ce) || ce.ExitCode != 3 || ce.Output != "it broke" || ce.Node != "ctl1" || res.ExitCode != 3 {
		t.Errorf("failing command: %v %+v", err, res)
	}
	res, err = n.Run(ctx, node.Cmd{Argv: []string{"cat"}, Stdin: strings.NewReader("payload")})
	if err != nil || string(res.Stdout) != "payload" {
		t.Errorf("stdin: %q %v", res.Stdout, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = n.Run(cctx, node.Cmd{Argv: []string{"hang"}})
	if !errors.As(err, &ce) || !strings.Contains(ce.Output, "deadline exceeded") {
		t.Errorf("a command past its deadline: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the deadline took %s to end the command", d)
	}
	// One connection served all of it.
	if got := s.conns.Load(); got != 1 {
		t.Errorf("%d connections for one host", got)
	}
}

func TestParallelCommandsShareOneConnection(t *testing.T) {
	f := newFixture(t)
	s := startServer(t, f.signer.PublicKey(), newSigner(t))
	f.trust(t, s.port(), s.hostKeys[0].PublicKey())
	var inFlight, most atomic.Int32
	s.handle = func(cmd string, _ io.Reader, stdout, _ io.Writer, _ <-chan struct{}) uint32 {
		now := inFlight.Add(1)
		for {
			m := most.Load()
			if now <= m || most.CompareAndSwap(m, now) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		inFlight.Add(-1)
		return 0
	}
	p := NewPool(Options{MaxSessions: 3, ConnectTimeout: 2 * time.Second})
	n, _ := p.Node(f.config(s))
	var wg sync.WaitGroup
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := hostname(t, n); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := s.conns.Load(); got != 1 {
		t.Errorf("%d connections for 12 commands at once on one host; want 1", got)
	}
	if got := most.Load(); got > 3 {
		t.Errorf("%d commands ran at once on one host; the limit is 3", got)
	}
}

func TestIdleConnectionCloses(t *testing.T) {
	f := newFixture(t)
	s := startServer(t, f.signer.PublicKey(), newSigner(t))
	f.trust(t, s.port(), s.hostKeys[0].PublicKey())
	p := NewPool(Options{IdleTimeout: 50 * time.Millisecond, ConnectTimeout: 2 * time.Second})
	n, _ := p.Node(f.config(s))
	if _, err := hostname(t, n); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.open.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.open.Load() != 0 {
		t.Fatal("the idle connection stayed open")
	}
	if _, err := hostname(t, n); err != nil {
		t.Fatalf("after an idle close: %v", err)
	}
	if got := s.conns.Load(); got != 2 {
		t.Errorf("%d connections, want 2 (one reconnect)", got)
	}
	p.Close()
}
