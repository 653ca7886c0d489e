package cli

import (
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hastack/hastack/internal/serve"
	"github.com/hastack/hastack/internal/sshnode"
	"github.com/hastack/hastack/internal/status"
)

func newServe(s Streams) *cobra.Command {
	var file, listen string
	var timeout time.Duration
	var lf labFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the combined health view: Prometheus metrics, the status JSON and a page",
		Long: `Serve what 'hastack status' sees, over HTTP:

  /metrics   Prometheus metrics (hastack_*, labels node and service): each
             engine's health per node, Galera state, size, flow control and
             receive queue, RabbitMQ running, partitions, alarms and queues,
             memcached items, evictions and connections, clock offset and
             stratum, the VIP holder and the writer
  /status    the status JSON ('hastack status -o json')
  /          a page with the status tables that reloads itself

Every request is answered from one shared probe round: concurrent scrapes
wait for the round in flight, and a round is reused for up to 1 s. A round
has a deadline (--probe-timeout); a node that has not answered by then is
reported as down, and the request is still answered. 'hastack render'
writes alert rules for these metrics (prometheus/hastack-alerts.yml).`,
		Example: `  hastack serve                         # 127.0.0.1:9105
  hastack serve --listen 10.77.0.5:9105 -f prod.yaml
  curl -s localhost:9105/metrics | grep hastack_up`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 || timeout > time.Minute {
				return usagef("--probe-timeout %s: give a duration above 0 and at most 1m", timeout)
			}
			c, err := loadSpec(file, s.Err)
			if err != nil {
				return err
			}
			// Listen first: a taken port is refused before anything is
			// probed.
			l, err := serve.Listen(listen)
			if err != nil {
				return &ExitError{Code: ExitFailed, Err: err}
			}
			defer l.Close()
			t, _, err := reach(c, file, lf.quiet(), sshnode.Options{ConnectAttempts: 1})
			if err != nil {
				return err
			}
			st := statusTarget(t)
			srv := serve.New(serve.Options{
				Cluster: c.Metadata.Name,
				Collect: serve.Collector(status.Target(st)),
				Timeout: timeout,
			})
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			fmt.Fprintf(s.Out, "serving cluster %s on http://%s/ (/metrics, /status); probe rounds shared, at most 1 per %s, each bounded by %s\n", c.Metadata.Name, l.Addr(), serve.DefaultMaxAge, timeout)
			return srv.Serve(ctx, l)
		},
	}
	addSpecFlag(cmd, &file)
	cmd.Flags().StringVar(&listen, "listen", serve.DefaultListen, "address:port to serve on")
	cmd.Flags().DurationVar(&timeout, "probe-timeout", serve.DefaultTimeout, "deadline of one probe round; nodes that have not answered by then are reported down")
	lf.add(cmd.Flags())
	return cmd
}
