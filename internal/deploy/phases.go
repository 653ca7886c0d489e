package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// Connect checks that every node answers a command.
func Connect() plan.Phase {
	return plan.Phase{Name: "connect", Plan: func(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
		err := plan.ForEach(ctx, plan.Names(t.Cluster.Spec.Nodes), func(ctx context.Context, name string) error {
			n := t.Node(name)
			if n == nil {
				return fmt.Errorf("no way to reach this node")
			}
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			host, err := plan.Sh(cctx, n, "hostname")
			if err != nil {
				return fmt.Errorf("unreachable: %w", err)
			}
			if host != name {
				t.Say("connect", name, "note: hostname is %q, not the spec's name; RabbitMQ and the name checks expect them equal", host)
			}
			return nil
		})
		if err == nil {
			t.Say("connect", "all", "%d nodes answer", len(t.Cluster.Spec.Nodes))
		}
		return nil, err
	}}
}

// Facts checks the operating system of every node.
func Facts() plan.Phase {
	return plan.Phase{Name: "facts", Plan: func(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
		return nil, plan.ForEach(ctx, plan.Names(t.Cluster.Spec.Nodes), func(ctx context.Context, name string) error {
			data, err := t.Node(name).ReadFile(ctx, "/etc/os-release")
			if err != nil {
				return err
			}
			id, ver := osRelease(string(data))
			return checkRelease(t.Cluster, name, id, ver)
		})
	}}
}

func osRelease(s string) (id, version string) {
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		switch k {
		case "ID":
			id = v
		case "VERSION_ID":
			version = v
		}
	}
	return id, version
}

// Packages installs the Debian packages each role needs, where missing. On
// a lab, nodes share the host's packages and have no route to a mirror:
// missing packages are an error that says to install them on the host.
// need lists the packages a node needs (engines.PackagesFor).
func Packages(lab bool, need func(spec.Node) []string) plan.Phase {
	return plan.Phase{Name: "packages", Plan: func(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
		missing := map[string][]string{}
		var mu = make(chan struct{}, 1)
		err := plan.ForEach(ctx, plan.Names(t.Cluster.Spec.Nodes), func(ctx context.Context, name string) error {
			n, _ := t.Cluster.Node(name)
			m, err := missingPackages(ctx, t.Node(name), need(n))
			if err != nil {
				return err
			}
			mu <- struct{}{}
			if len(m) > 0 {
				missing[name] = m
			}
			<-mu
			return nil
		})
		if err != nil {
			return nil, err
		}
		var steps []plan.Step
		for _, n := range t.Cluster.Spec.Nodes {
			m := missing[n.Name]
			if len(m) == 0 {
				continue
			}
			if lab {
				return nil, fmt.Errorf("%s: packages %s are missing; lab nodes use this machine's packages: install them here (bash scripts/install-deps, or apt-get install %s), then remake the lab, whose nodes copy the packages' configuration when they are made ('hastack lab down' and 'hastack lab up'), and run 'hastack up' again", n.Name, strings.Join(m, " "), strings.Join(m, " "))
			}
			nd := t.Node(n.Name)
			steps = append(steps, plan.Step{Host: n.Name, Action: "apt-get install " + strings.Join(m, " ") + " (services not started by the packages)", Do: func(ctx context.Context) error {
				return installQuietly(ctx, nd, m)
			}})
		}
		return steps, nil
	}}
}

// InstallMissing installs those of pkgs the node lacks, with the
// packages' scripts kept from starting services (hastack starts the
// engines), and returns what it installed. The one installer: the packages
// phase uses it on every host, 'hastack demo' on this machine.
func InstallMissing(ctx context.Context, nd node.Node, pkgs []string) ([]string, error) {
	missing, err := missingPackages(ctx, nd, pkgs)
	if err != nil || len(missing) == 0 {
		return nil, err
	}
	return missing, installQuietly(ctx, nd, missing)
}

func missingPackages(ctx context.Context, n node.Node, pkgs []string) ([]string, error) {
	res, err := n.Run(ctx, node.Cmd{Argv: append([]string{"dpkg-query", "-W", "-f", "${Package} ${Status}\n"}, pkgs...)})
	// dpkg-query exits 1 when a package is unknown; its output still lists
	// the known ones.
	var ce *node.CommandError
	if err != nil && !(asCommandError(err, &ce) && ce.ExitCode == 1) {
		return nil, err
	}
	installed := map[string]bool{}
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[len(f)-1] == "installed" && f[len(f)-3] == "install" {
			installed[f[0]] = true
		}
	}
	var missing []string
	for _, p := range pkgs {
		if !installed[p] {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// mark is what a secret leaves on a controller once a cluster was
// deployed with it: a path (glob), counted only beside another (also).
type mark struct{ what, glob, also string }

// Extra is a secret beyond the layer's own (an OpenStack service's
// database password, the token cache key), and the mark a controller
// bears once the cluster used it: Glob, a path the node's shell expands,
// named What in messages; no Glob when nothing shows it.
type Extra struct {
	Name, What, Glob string
}

// Secrets generates the secrets the cluster needs, once, into the 0600
// secrets file beside the spec. Everything after reads them. A secret
// whose mark a controller already bears is not generated: the run is
// refused (see refuseNewSecretsForOldCluster).
func Secrets(store *secrets.Store, extra ...Extra) plan.Phase {
	state := map[string]mark{}
	for k, v := range deployedState {
		state[k] = v
	}
	names := secrets.Names()
	for _, e := range extra {
		names = append(names, e.Name)
		if e.Glob != "" {
			state[e.Name] = mark{what: e.What, glob: e.Glob}
		}
	}
	return plan.Phase{Name: "secrets", Plan: func(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
		var missing []string
		for _, n := range names {
			if !store.Has(n) {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			return nil, nil
		}
		slices.Sort(missing)
		if err := refuseNewSecretsForOldCluster(ctx, t, store.Path(), missing, state); err != nil {
			return nil, err
		}
		// Generated now, stored by the step: later phases plan with the
		// complete set in a dry run too (the values are never printed).
		gen := store.Generate(missing...)
		if t.DryRun {
			t.Secrets = store.Values().With(gen)
		}
		return []plan.Step{{Host: "local", Action: fmt.Sprintf("generate %s into %s (mode 0600)", strings.Join(missing, ", "), store.Path()), Do: func(ctx context.Context) error {
			store.Set(gen)
			if err := store.Save(); err != nil {
				return err
			}
			t.Secrets = store.Values()
			return nil
		}}}, nil
	}}
}

// deployedState is where each secret has left its mark on a controller
// once the cluster was deployed with it: Galera's state file for the
// database password, a RabbitMQ node database for the bus's secrets. A mark
// counts only beside hastack's own file of that engine (also): Debian's
// rabbitmq-server starts at install and makes a node database of its own
// (guest only), which is no deployment; the package never writes
// definitions.json. Galera's grastate.dat appears only once wsrep ran, not
// for the package's stand-alone MariaDB.
var deployedState = map[string]mark{
	secrets.DatabaseAdminPassword: {"Galera data", "/var/lib/mysql/grastate.dat", ""},
	secrets.ErlangCookie:          {"a RabbitMQ node database", "/var/lib/rabbitmq/mnesia/rabbit@*", "/etc/rabbitmq/definitions.json"},
	secrets.RabbitAdminPassword:   {"a RabbitMQ node database", "/var/lib/rabbitmq/mnesia/rabbit@*", "/etc/rabbitmq/definitions.json"},
	secrets.RabbitServicePassword: {"a RabbitMQ node database", "/var/lib/rabbitmq/mnesia/rabbit@*", "/etc/rabbitmq/definitions.json"},
}

// refuseNewSecretsForOldCluster stops a deploy that would generate a
// secret a deployed cluster already has: the secrets file was lost or
// replaced. New values would lock hastack out of its own database user and
// give RabbitMQ nodes a different Erlang cookie one restart at a time
// (each restarted node then cannot talk to the others). Nothing has
// changed when it refuses.
func refuseNewSecretsForOldCluster(ctx context.Context, t *plan.Target, path string, missing []string, deployedState map[string]mark) error {
	// The missing secrets grouped by the state they would have left.
	globs := map[string][]string{}
	for _, m := range missing {
		if d, ok := deployedState[m]; ok {
			globs[d.glob] = append(globs[d.glob], m)
		}
	}
	ctls := plan.Names(t.Cluster.Controllers())
	var mu sync.Mutex
	var found []string
	err := plan.ForEach(ctx, ctls, func(ctx context.Context, name string) error {
		for glob, names := range globs {
			// The glob is expanded by the node's shell; no match leaves it
			// as it is, which 'test -e' rejects.
			also := ""
			if a := deployedState[names[0]].also; a != "" {
				also = " && test -e " + a
			}
			res, err := t.Node(name).Run(ctx, node.Cmd{Argv: []string{"sh", "-c", "for f in " + glob + "; do test -e \"$f\"" + also + " && echo \"$f\"; done; true"}})
			if err != nil {
				return fmt.Errorf("%s: looking for deployed state: %w", name, err)
			}
			if p := strings.TrimSpace(strings.SplitN(string(res.Stdout), "\n", 2)[0]); p != "" {
				mu.Lock()
				found = append(found, fmt.Sprintf("%s has %s (%s) but %s has no %s", name, deployedState[names[0]].what, p, path, strings.Join(names, ", ")))
				mu.Unlock()
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return nil
	}
	slices.Sort(found)
	return fmt.Errorf("the cluster was deployed with secrets this secrets file does not have:\n  %s\n"+
		"it was lost or replaced. New secrets would lock hastack out of the database and give RabbitMQ nodes a different Erlang cookie. "+
		"Nothing was changed. Restore the secrets file the cluster was deployed with beside the spec and run 'hastack up' again", strings.Join(found, "\n  "))
}

func asCommandError(err error, target **node.CommandError) bool {
	return errors.As(err, target)
}

// policyRCD refuses every service start requested by a package script.
const policyRCD = "#!/bin/sh\n# hastack: packages being installed must not start their services; hastack starts them with its configuration.\nexit 101\n"

// installQuietly installs packages without letting their scripts start
// the services: Debian starts mariadb, rabbitmq-server, memcached... on
// install with the packaged configuration, which would bind the engines'
// ports with the wrong settings (and a stand-alone MariaDB would later look
// like a Galera node without a cluster). A policy-rc.d that refuses starts
// is in place for the install only, unless the host already has one.
func installQuietly(ctx context.Context, nd node.Node, pkgs []string) error {
	const path = "/usr/sbin/policy-rc.d"
	_, err := nd.ReadFile(ctx, path)
	ours := errors.Is(err, fs.ErrNotExist)
	if ours {
		if err := nd.WriteFile(ctx, path, []byte(policyRCD), 0o755, ""); err != nil {
			return err
		}
		defer func() {
			// With a fresh context: the install may have hit its deadline,
			// and the host must not keep refusing service starts.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_, _ = nd.Run(cctx, node.Cmd{Argv: []string{"rm", "-f", path}})
		}()
	}
	return aptInstall(ctx, nd, pkgs)
}
