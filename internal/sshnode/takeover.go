package sshnode

import (
	"context"
	"fmt"
	"strings"
)

// What a Debian host's packages set up that hastack takes over before it
// starts or stops an engine there.
//
//   - sockets: Debian's mariadb.socket (enabled by the package) holds
//     *:3306 in systemd itself and starts mariadb.service on the first
//     connection: hastack's MariaDB would find its port taken, and a
//     stopped node would be started again, stand-alone, by any client.
//     They are stopped and disabled.
//   - units that must not start by themselves at boot: mariadb.service.
//     After every controller rebooted, each enabled MariaDB starts, waits
//     for a Primary component that none can form, and stays 'activating'
//     (15 minutes): Galera cannot start itself after a full stop. hastack
//     up starts the cluster in the right order instead (the node Galera
//     marked safe, or the most advanced one). The unit is disabled, not
//     stopped.
//   - Debian's epmd.socket listens on *:4369 and ignores ERL_EPMD_ADDRESS,
//     which hastack sets to the management address: a drop-in makes it
//     listen there and on loopback only. Applied before RabbitMQ starts
//     (epmd restarted under a running node would lose its registration).
var (
	takeOverSockets = map[string][]string{"mariadb": {"mariadb.socket", "mariadb-extra.socket"}}
	notAtBoot       = map[string]bool{"mariadb": true}
)

// takeOver stops and disables the service's sockets and disables its unit
// where the unit must not start at boot. Units the host does not have are
// skipped. It asks systemd once and acts only on what needs it.
func (s *Systemd) takeOver(ctx context.Context, service string, starting bool) error {
	if service == "rabbitmq" && starting {
		if _, err := s.sh(ctx, "sh", "-c", epmdScript); err != nil {
			return fmt.Errorf("binding epmd to the management address: %w", err)
		}
	}
	socks := takeOverSockets[service]
	units := append([]string{}, socks...)
	if notAtBoot[service] {
		units = append(units, Unit(service))
	}
	if len(units) == 0 {
		return nil
	}
	res, err := s.sh(ctx, append([]string{"systemctl", "show", "--property=Id,LoadState,ActiveState,UnitFileState"}, units...)...)
	if err != nil {
		return fmt.Errorf("taking over %s from the package: %w", service, err)
	}
	var stopSocks, disable []string
	for _, block := range strings.Split(string(res.Stdout), "\n\n") {
		p := map[string]string{}
		for _, line := range strings.Split(block, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				p[k] = v
			}
		}
		if p["LoadState"] != "loaded" {
			continue
		}
		isSocket := strings.HasSuffix(p["Id"], ".socket")
		if isSocket && p["ActiveState"] != "inactive" && p["ActiveState"] != "failed" {
			stopSocks = append(stopSocks, p["Id"])
		}
		if p["UnitFileState"] == "enabled" {
			disable = append(disable, p["Id"])
		}
	}
	if len(disable) > 0 {
		if _, err := s.sh(ctx, append([]string{"systemctl", "disable", "--quiet"}, disable...)...); err != nil {
			return fmt.Errorf("taking over %s: %w", service, err)
		}
	}
	if len(stopSocks) > 0 {
		if _, err := s.sh(ctx, append([]string{"systemctl", "stop"}, stopSocks...)...); err != nil {
			return fmt.Errorf("taking over %s: %w", service, err)
		}
	}
	return nil
}

// epmdScript gives Debian's epmd.socket the address of ERL_EPMD_ADDRESS in
// /etc/rabbitmq/rabbitmq-env.conf (hastack's) and loopback, once.
const epmdScript = `f=/etc/rabbitmq/rabbitmq-env.conf
a=$(sed -n 's/^\(export \)\{0,1\}ERL_EPMD_ADDRESS=//p' "$f" 2>/dev/null | tail -n 1)
[ -n "$a" ] || exit 0
systemctl cat epmd.socket >/dev/null 2>&1 || exit 0
d=/etc/systemd/system/epmd.socket.d
want=$(printf '# Written by hastack: epmd on the management address and loopback only\n# (Debian'"'"'s epmd.socket ignores ERL_EPMD_ADDRESS).\n[Socket]\nListenStream=\nListenStream=127.0.0.1:4369\nListenStream=%s:4369\nFreeBind=true' "$a")
[ "$(cat "$d/hastack.conf" 2>/dev/null)" = "$want" ] && exit 0
set -e
mkdir -p "$d"
printf '%s\n' "$want" >"$d/hastack.conf"
systemctl daemon-reload
systemctl stop epmd.service epmd.socket
systemctl start epmd.socket`
