package rabbitmq

import (
	"maps"
	"slices"

	"github.com/hastack/hastack/internal/plan"
)

// schedule turns the facts into steps and waves. It returns the next free
// wave and whether the closing check is among the steps.
func schedule(e *env, all []*facts) (steps []plan.Step, nextWave int, checked bool) {
	// Wave 0: folders and files, every node at once. Files are written
	// before any (re)start so each broker boots with its final
	// configuration.
	for _, f := range all {
		if s := prepareStep(f); s != nil {
			steps = append(steps, *s)
		}
	}

	// Wave 1: brokers that run but do not answer yet (booting, or waiting
	// for their peers' tables) are waited for, not restarted: a restart
	// would only start that wait over. A paused broker (its application
	// stopped) would wait for ever: its application is started.
	up := map[string]bool{} // nodes expected to run in the cluster as the waves go
	var waited []*facts
	for _, f := range all {
		if !f.running {
			continue
		}
		up[f.n.Name] = true
		switch {
		case f.needsRestart() || f.drained:
		case f.paused:
			steps = append(steps, resumeStep(e, f, 1))
			waited = append(waited, f)
		case f.apiErr != nil:
			steps = append(steps, waitStep(e, f, 1))
			waited = append(waited, f)
		}
	}

	wave := 2
	var touched []*facts // nodes started or restarted, in order
	var toStart []*facts
	for _, f := range all {
		if !f.running {
			toStart = append(toStart, f)
		}
	}
	if len(up) == 0 && len(toStart) > 0 {
		// Nothing runs. Former members (with data) must start together:
		// each waits at boot for the peers it saw last, so starting them
		// one at a time could wait on a node not started yet. Blank nodes
		// then join one at a time; when every node is blank, the first
		// controller forms the cluster alone.
		var withData, blank []*facts
		for _, f := range toStart {
			if f.hasData {
				withData = append(withData, f)
			} else {
				blank = append(blank, f)
			}
		}
		// startGroup starts nodes at once, in one wave, each waiting
		// for all of them.
		startGroup := func(nodes []*facts, how startHow) {
			group := map[string]bool{}
			for _, f := range nodes {
				group[f.n.Name] = true
			}
			for _, f := range nodes {
				steps = append(steps, startStep(e, f, wave, how, group, false))
				touched = append(touched, f)
			}
			maps.Copy(up, group)
			wave++
		}
		toStart = blank
		switch {
		case len(withData) > 0:
			startGroup(withData, startTogether)
		case formsTogether(blank):
			startGroup(blank, startFormTogether)
			toStart = nil
		}
	}
	var joined []*facts // blank nodes joining a cluster that holds data
	for _, f := range toStart {
		how := startJoin
		switch {
		case len(up) == 0:
			how = startFirst
		case f.hasData:
			how = startRejoin
		case slices.ContainsFunc(all, func(g *facts) bool { return g.hasData }):
			joined = append(joined, f)
		}
		up[f.n.Name] = true
		steps = append(steps, startStep(e, f, wave, how, maps.Clone(up), false))
		touched = append(touched, f)
		wave++
	}
	// Rolling restarts last, once every node that was down runs again:
	// the cluster keeps its majority throughout.
	for _, f := range all {
		if f.needsRestart() {
			steps = append(steps, startStep(e, f, wave, startRestart, maps.Clone(up), true))
			touched = append(touched, f)
			wave++
		}
	}

	// A broker whose statistics died gets its management agent back
	// (not restarted itself), unless it was just (re)started anyway.
	agents := false
	for _, f := range all {
		if f.statsDead && !slices.Contains(touched, f) {
			steps = append(steps, statsStep(e, f, wave))
			agents = true
		}
	}
	if agents {
		wave++
	}

	// A broker left in maintenance mode (an interrupted 'hastack
	// restart') is taken out of it, unless it was just restarted (which
	// revives it).
	var revived []*facts
	for _, f := range all {
		if f.drained && !slices.Contains(touched, f) {
			steps = append(steps, reviveStep(f, wave))
			revived = append(revived, f)
		}
	}
	if len(revived) > 0 {
		wave++
		// The closing check runs after it (through a revived node).
		touched = append(touched, revived...)
	}

	// The closing check runs after any start or wait, through the node
	// started last (the one whose view is newest).
	var host *facts
	switch {
	case len(touched) > 0:
		host = touched[len(touched)-1]
	case len(waited) > 0:
		host = waited[len(waited)-1]
	default:
		return steps, wave, false
	}
	steps = append(steps, checkStep(e, host, nil, wave, maps.Clone(up)))
	wave++
	if len(joined) > 0 {
		// A blank node that joined a cluster with data (a rebuilt
		// controller) holds no replica of the quorum queues declared
		// before: they are grown onto it, or every queue stays a replica
		// short and status says so.
		steps = append(steps, queueRepairStep(e, joined[len(joined)-1], wave, nil))
		wave++
	}
	return steps, wave, true
}
