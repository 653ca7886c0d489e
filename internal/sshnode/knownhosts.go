package sshnode

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is a host key hastack refuses: unknown (and new keys are
// not accepted), changed, or revoked. Its message says what to check and
// how to fix it.
type HostKeyError struct {
	Host       string // as recorded in known_hosts: 10.0.0.11 or [10.0.0.11]:2222
	KnownHosts string
	Offered    ssh.PublicKey
	// Known are the keys recorded for the host; empty when it is unknown.
	Known   []knownhosts.KnownKey
	Revoked bool
}

func (e *HostKeyError) Error() string {
	offered := fmt.Sprintf("%s %s", e.Offered.Type(), ssh.FingerprintSHA256(e.Offered))
	switch {
	case e.Revoked:
		return fmt.Sprintf("the host key %s is marked @revoked in %s; refusing to connect", offered, e.KnownHosts)
	case len(e.Known) > 0:
		k := e.Known[0]
		return fmt.Sprintf("HOST KEY CHANGED: %s line %d has %s %s for %s, the host offers %s; refusing to connect (whatever acceptNewHostKeys says): someone may be intercepting the connection, or the host was reinstalled; if you know it was, remove the old key with 'ssh-keygen -R %s -f %s' and connect again",
			k.Filename, k.Line, k.Key.Type(), ssh.FingerprintSHA256(k.Key), e.Host, offered, e.Host, e.KnownHosts)
	}
	return fmt.Sprintf("the host key is not known: %s is not in %s; refusing to connect: compare it with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub on its console), then add it to %s, or set acceptNewHostKeys: true to trust a new host's key on first use",
		offered, e.KnownHosts, keyFileType(e.Offered), e.KnownHosts)
}

// keyFileType is the part of sshd's host key file name for a key type.
func keyFileType(k ssh.PublicKey) string {
	switch k.Type() {
	case ssh.KeyAlgoED25519:
		return "ed25519"
	case ssh.KeyAlgoRSA:
		return "rsa"
	default:
		return "ecdsa"
	}
}

// knownHosts checks host keys against known_hosts files and records new
// ones. Appends to one file are serialised: several hosts may be new at
// once.
type knownHosts struct {
	mu sync.Mutex
	// probe is a key no host has: asking the file about it yields the keys
	// it records for a host (knownhosts has no lookup of its own).
	probe ssh.PublicKey
}

func newKnownHosts() *knownHosts {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err) // the system's random source failed
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return &knownHosts{probe: k}
}

// knownHostsName is how known_hosts and ssh-keygen -R name the host.
func knownHostsName(c Config) string { return knownhosts.Normalize(c.addr()) }

// callback returns the host key check for one host, and the host key
// algorithms to ask for: those of the keys known_hosts records for it, so a
// host with a known ed25519 key is not judged by the RSA key it would offer
// first (the handshake would then look like a changed key).
func (k *knownHosts) callback(c Config) (ssh.HostKeyCallback, []string, error) {
	check, err := k.load(c)
	if err != nil {
		return nil, nil, err
	}
	var algos []string
	var ke *knownhosts.KeyError
	if err := check(c.addr(), fakeAddr(c), k.probe); errors.As(err, &ke) {
		for _, kk := range ke.Want {
			for _, a := range algorithmsFor(kk.Key.Type()) {
				if !slices.Contains(algos, a) {
					algos = append(algos, a)
				}
			}
		}
	}
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := check(hostname, remote, key)
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &re):
			return &HostKeyError{Host: knownHostsName(c), KnownHosts: c.KnownHosts, Offered: key, Revoked: true}
		case errors.As(err, &ke) && len(ke.Want) > 0:
			return &HostKeyError{Host: knownHostsName(c), KnownHosts: c.KnownHosts, Offered: key, Known: ke.Want}
		case errors.As(err, &ke):
			if !c.AcceptNewHostKeys {
				return &HostKeyError{Host: knownHostsName(c), KnownHosts: c.KnownHosts, Offered: key}
			}
			return k.add(c, key)
		}
		return err
	}, algos, nil
}

// load parses the known_hosts file. A missing file knows no host: with new
// keys accepted it is created on the first one.
func (k *knownHosts) load(c Config) (ssh.HostKeyCallback, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	check, err := knownhosts.New(c.KnownHosts)
	if errors.Is(err, fs.ErrNotExist) {
		empty, terr := os.CreateTemp("", "hastack-known-hosts-")
		if terr != nil {
			return nil, terr
		}
		empty.Close()
		defer os.Remove(empty.Name())
		return knownhosts.New(empty.Name())
	}
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", c.KnownHosts, err)
	}
	return check, nil
}

// add records a new host key, as OpenSSH's accept-new does.
func (k *knownHosts) add(c Config, key ssh.PublicKey) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(c.KnownHosts), 0o700); err != nil {
		return fmt.Errorf("recording the new host key: %w", err)
	}
	line := knownhosts.Line([]string{knownHostsName(c)}, key) + "\n"
	// Keep lines whole when the file does not end with a newline.
	if data, err := os.ReadFile(c.KnownHosts); err == nil && len(data) > 0 && !bytes.HasSuffix(data, []byte("\n")) {
		line = "\n" + line
	}
	f, err := os.OpenFile(c.KnownHosts, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("recording the new host key: %w", err)
	}
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("recording the new host key in %s: %w", c.KnownHosts, err)
	}
	return nil
}

// algorithmsFor lists the host key algorithms that verify a key type; an
// RSA key signs with SHA-2 today, SHA-1 only for old servers.
func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// fakeAddr is the remote address given to the lookup: knownhosts also
// matches entries by the address it connected to. A host name is not
// resolved for it (entries by name still match).
func fakeAddr(c Config) net.Addr {
	ip := net.ParseIP(c.Host)
	if ip == nil {
		ip = net.IPv4zero
	}
	return &net.TCPAddr{IP: ip, Port: c.Port}
}
