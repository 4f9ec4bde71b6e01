package tunnel

import (
	"time"

	"github.com/p2prc/p2prc/mux"
)

// watchPeer calls dead once the peer behind wire has sent nothing for
// timeout, checking a few times per timeout, and returns; it returns at once
// when done is closed.
func watchPeer(done <-chan struct{}, wire *mux.Wire, timeout time.Duration, dead func(silent time.Duration)) {
	t := time.NewTicker(max(timeout/6, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			if silent := wire.SilentFor(now); silent >= timeout {
				dead(silent)
				return
			}
		}
	}
}

// silentPeer reports whether the peer behind wire had gone silent for most
// of timeout when its session ended, and for how long. A session can end
// on a failed read or write a moment before the watchdog fires (the
// kernel's TCP_USER_TIMEOUT is the same timeout); the silence is then the
// cause worth telling, not the failed call.
func silentPeer(wire *mux.Wire, timeout time.Duration) (time.Duration, bool) {
	silent := wire.SilentFor(time.Now())
	return silent, silent >= timeout*9/10
}
