package memcached

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Answers to 'stats' and 'stats settings' captured from memcached 1.6.18
// (-m 16 -c 64, one item stored) on this project's test machine. The wire
// ends lines with CRLF; crlf restores that.
const capturedStats = `STAT pid 21394
STAT uptime 2
STAT time 1795549147
STAT version 1.6.18
STAT libevent 2.1.12-stable
STAT pointer_size 64
STAT rusage_user 0.000000
STAT rusage_system 0.006692
STAT max_connections 64
STAT curr_connections 1
STAT total_connections 2
STAT rejected_connections 0
STAT connection_structures 2
STAT response_obj_oom 0
STAT response_obj_count 1
STAT response_obj_bytes 16384
STAT read_buf_count 2
STAT read_buf_bytes 32768
STAT read_buf_bytes_free 0
STAT read_buf_oom 0
STAT reserved_fds 20
STAT cmd_get 0
STAT cmd_set 1
STAT cmd_flush 0
STAT cmd_touch 0
STAT cmd_meta 0
STAT get_hits 0
STAT get_misses 0
STAT get_expired 0
STAT get_flushed 0
STAT delete_misses 0
STAT delete_hits 0
STAT incr_misses 0
STAT incr_hits 0
STAT decr_misses 0
STAT decr_hits 0
STAT cas_misses 0
STAT cas_hits 0
STAT cas_badval 0
STAT touch_hits 0
STAT touch_misses 0
STAT store_too_large 0
STAT store_no_memory 0
STAT auth_cmds 0
STAT auth_errors 0
STAT bytes_read 23
STAT bytes_written 8
STAT limit_maxbytes 16777216
STAT accepting_conns 1
STAT listen_disabled_num 0
STAT time_in_listen_disabled_us 0
STAT threads 4
STAT conn_yields 0
STAT hash_power_level 16
STAT hash_bytes 524288
STAT hash_is_expanding 0
STAT slab_reassign_rescues 0
STAT slab_reassign_chunk_rescues 0
STAT slab_reassign_evictions_nomem 0
STAT slab_reassign_inline_reclaim 0
STAT slab_reassign_busy_items 0
STAT slab_reassign_busy_deletes 0
STAT slab_reassign_running 0
STAT slabs_moved 0
STAT lru_crawler_running 0
STAT lru_crawler_starts 1
STAT lru_maintainer_juggles 39
STAT malloc_fails 0
STAT log_worker_dropped 0
STAT log_worker_written 0
STAT log_watcher_skipped 0
STAT log_watcher_sent 0
STAT log_watchers 0
STAT unexpected_napi_ids 0
STAT round_robin_fallback 0
STAT bytes 61
STAT curr_items 1
STAT total_items 1
STAT slab_global_page_pool 0
STAT expired_unfetched 0
STAT evicted_unfetched 0
STAT evicted_active 0
STAT evictions 0
STAT reclaimed 0
STAT crawler_reclaimed 0
STAT crawler_items_checked 0
STAT lrutail_reflocked 0
STAT moves_to_cold 0
STAT moves_to_warm 0
STAT moves_within_lru 0
STAT direct_reclaims 0
STAT lru_bumps_dropped 0
END
`

const capturedSettings = `STAT maxbytes 16777216
STAT maxconns 64
STAT tcpport 11311
STAT udpport 0
STAT inter 127.0.0.1
STAT verbosity 0
STAT oldest 0
STAT evictions on
STAT domain_socket NULL
STAT umask 700
STAT shutdown_command no
STAT growth_factor 1.25
STAT chunk_size 48
STAT num_threads 4
STAT num_threads_per_udp 4
STAT stat_key_prefix :
STAT detail_enabled no
STAT reqs_per_event 20
STAT cas_enabled yes
STAT tcp_backlog 1024
STAT binding_protocol auto-negotiate
STAT auth_enabled_sasl no
STAT auth_enabled_ascii no
STAT item_size_max 1048576
STAT maxconns_fast yes
STAT hashpower_init 0
STAT slab_reassign yes
STAT slab_automove 1
STAT slab_automove_ratio 0.80
STAT slab_automove_window 30
STAT slab_chunk_max 524288
STAT lru_crawler yes
STAT lru_crawler_sleep 100
STAT lru_crawler_tocrawl 0
STAT tail_repair_time 0
STAT flush_enabled yes
STAT dump_enabled yes
STAT hash_algorithm murmur3
STAT lru_maintainer_thread yes
STAT lru_segmented yes
STAT hot_lru_pct 20
STAT warm_lru_pct 40
STAT hot_max_factor 0.20
STAT warm_max_factor 2.00
STAT temp_lru no
STAT temporary_ttl 61
STAT idle_timeout 0
STAT watcher_logbuf_size 262144
STAT worker_logbuf_size 65536
STAT read_buf_mem_limit 0
STAT track_sizes no
STAT inline_ascii_response no
STAT ext_item_size 512
STAT ext_item_age 4294967295
STAT ext_low_ttl 0
STAT ext_recache_rate 2000
STAT ext_wbuf_size 4194304
STAT ext_compact_under 0
STAT ext_drop_under 0
STAT ext_max_sleep 1000000
STAT ext_max_frag 0.80
STAT slab_automove_freeratio 0.010
STAT ext_drop_unread no
STAT ssl_enabled no
STAT ssl_chain_cert (null)
STAT ssl_key (null)
STAT ssl_verify_mode 0
STAT ssl_keyformat 1
STAT ssl_ciphers NULL
STAT ssl_ca_cert NULL
STAT ssl_wbuf_size 16384
STAT ssl_session_cache no
STAT ssl_kernel_tls no
STAT ssl_min_version tlsv1.2
STAT num_napi_ids (null)
STAT memory_file (null)
END
`

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func TestParseCapturedStats(t *testing.T) {
	r := bufio.NewReader(strings.NewReader(crlf(capturedStats + capturedSettings)))
	stats, err := parseStats(r)
	if err != nil {
		t.Fatal(err)
	}
	settings, err := parseStats(r)
	if err != nil {
		t.Fatal(err)
	}
	got := statsFrom("127.0.0.1:11311", stats, settings)
	want := Stats{
		Healthy: true, Address: "127.0.0.1:11311", Version: "1.6.18", UptimeSeconds: 2,
		CurrItems: 1, CurrConnections: 1, MaxConnections: 64, Bytes: 61, LimitMaxBytes: 16 << 20,
	}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseStatsErrors(t *testing.T) {
	for _, in := range []string{
		"ERROR\r\n",
		"SERVER_ERROR out of memory\r\n",
		"HTTP/1.1 400 Bad Request\r\n",
		"STAT pid 1\r\n", // cut off before END
	} {
		if _, err := parseStats(bufio.NewReader(strings.NewReader(in))); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestProbeNotMemcached(t *testing.T) {
	// Something that accepts the connection and then says nothing: the
	// probe must give up at the context's deadline, not hang.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			<-done
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	st, err := Probe(ctx, ln.Addr().String())
	if !errors.Is(err, context.DeadlineExceeded) || st.Healthy || st.Problem == "" {
		t.Errorf("silent server: %+v, %v; want a deadline error", st, err)
	}
}

func TestIntegrationProbe(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts a real memcached on loopback; runs without -short, as root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root (memcached is started as root and drops to the memcache user); run as root, or use -short")
	}
	if _, err := exec.LookPath("memcached"); err != nil {
		t.Fatal("memcached is not installed: run scripts/install-deps")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()

	// The flags of the rendered memcached.conf, on loopback and small.
	cmd := exec.Command("memcached", "-l", "127.0.0.1", "-p", port, "-U", "0", "-m", "16", "-c", "64", "-u", User)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	t.Cleanup(stop)

	ctx := context.Background()
	var st Stats
	for deadline := time.Now().Add(20 * time.Second); ; {
		if st, err = Probe(ctx, addr); err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("memcached exited: %v\n%s", cmd.ProcessState, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("memcached does not answer: %v", err)
		}
	}
	if !st.Healthy || st.Problem != "" || st.MaxConnections != 64 || st.LimitMaxBytes != 16<<20 || st.Version == "" {
		t.Errorf("fresh memcached: %+v", st)
	}

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "set hastack-probe 0 0 2\r\nok\r\n")
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "STORED\r\n" {
		t.Fatalf("set: %q, %v", line, err)
	}
	st, err = Probe(ctx, addr)
	if err != nil || st.CurrItems != 1 || st.CurrConnections < 2 {
		t.Errorf("after one set, with a client connected: %+v, %v; want 1 item, at least 2 connections", st, err)
	}
	c.Close()

	stop()
	if st, err := Probe(ctx, addr); err == nil || st.Healthy || st.Problem == "" {
		t.Errorf("stopped: %+v, %v; want an error", st, err)
	}
}
