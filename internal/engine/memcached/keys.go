package memcached

import (
	"bufio"
	"context"
	"fmt"
	"hash/crc32"
	"net"
	"net/url"
	"strings"
	"time"
)

// Keys lists the keys the memcached at address holds now ('lru_crawler
// metadump all', memcached 1.4.31 and later). Expired keys not yet crawled
// may be among them.
func Keys(ctx context.Context, address string) ([]string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("memcached %s: %w", address, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write([]byte("lru_crawler metadump all\r\n")); err != nil {
		return nil, fmt.Errorf("memcached %s: %w", address, ctxErr(ctx, err))
	}
	var keys []string
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("memcached %s: lru_crawler metadump: %w", address, ctxErr(ctx, err))
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "END":
			return keys, nil
		case strings.HasPrefix(line, "key="):
			// key=<URI-encoded key> exp=... la=... ...
			k, _, _ := strings.Cut(line[len("key="):], " ")
			if dec, err := url.PathUnescape(k); err == nil {
				k = dec
			}
			keys = append(keys, k)
		case line == "ERROR", strings.HasPrefix(line, "CLIENT_ERROR"), strings.HasPrefix(line, "SERVER_ERROR"), strings.HasPrefix(line, "BUSY"):
			return nil, fmt.Errorf("memcached %s: lru_crawler metadump: server answered %q", address, line)
		}
	}
}

// ClientServer is the server python-memcached (the client of oslo.cache's
// memcache_pool and of keystonemiddleware, which hastack renders) sends key
// to, of n servers listed in one order: crc32 of the key, bits 16-30, mod n
// (memcache.py's cmemcache_hash; 0 counts as 1).
func ClientServer(key string, n int) int {
	h := (crc32.ChecksumIEEE([]byte(key)) >> 16) & 0x7fff
	if h == 0 {
		h = 1
	}
	return int(h) % n
}

// Moves is what a change of the services' memcached list does to the keys
// cached now.
type Moves struct {
	// Keys cached now, on every server of the old list that answered.
	Keys int `json:"keys"`
	// Moved keys are on a server that stays, but the clients look for
	// them on another one after the change: each is missed once.
	Moved int `json:"moved"`
	// Gone keys are on a server the new list drops.
	Gone int `json:"gone"`
}

// KeyMoves counts, for keys as each server of old holds them, the keys a
// python-memcached client of the new list looks for elsewhere.
func KeyMoves(held map[string][]string, old, new []string) Moves {
	var m Moves
	for _, srv := range old {
		keys := held[srv]
		m.Keys += len(keys)
		stays := false
		for _, s := range new {
			stays = stays || s == srv
		}
		if !stays {
			m.Gone += len(keys)
			continue
		}
		for _, k := range keys {
			if new[ClientServer(k, len(new))] != srv {
				m.Moved++
			}
		}
	}
	return m
}
