package sshnode

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// refusedSession reports whether opening a session failed because sshd
// refused the channel (its MaxSessions reached: "no more sessions"), not
// because the connection broke.
func refusedSession(err error) bool {
	var oce *ssh.OpenChannelError
	return errors.As(err, &oce)
}

// sessionRetryDelay is the wait before asking again for a refused session:
// 50 ms, doubling, at most 1 s.
func sessionRetryDelay(attempt int) time.Duration {
	d := 50 * time.Millisecond << min(attempt-1, 5)
	return min(d, time.Second)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// hostDeadline makes the host end the command itself when the context's
// deadline passes (coreutils' timeout: SIGTERM, SIGKILL 5 s later). sshd
// does not pass a client's signal to a root session ("session signalling
// requires privilege separation"), so the SIGTERM exec sends is ignored
// there, and a command that outlives its deadline keeps its session, one of
// the connection's MaxSessions, until it ends by itself. line is a command
// line from CommandLine ("exec ...").
func hostDeadline(ctx context.Context, line string) string {
	dl, ok := ctx.Deadline()
	if !ok || !strings.HasPrefix(line, "exec ") {
		return line
	}
	// A second more than the caller waits: the caller's own deadline ends
	// the wait first and says so; the host's only cleans up.
	secs := int(math.Ceil(time.Until(dl).Seconds())) + 1
	if secs < 1 {
		secs = 1
	}
	return fmt.Sprintf("exec timeout -k 5 %d %s", secs, strings.TrimPrefix(line, "exec "))
}
