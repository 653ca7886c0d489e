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
var (
	takeOverSockets = map[string][]string{"mariadb": {"mariadb.socket", "mariadb-extra.socket"}}
	notAtBoot       = map[string]bool{"mariadb": true}
)

// takeOver stops and disables the service's sockets and disables its unit
// where the unit must not start at boot. Units the host does not have are
// skipped. It asks systemd once and acts only on what needs it.
func (s *Systemd) takeOver(ctx context.Context, service string) error {
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
