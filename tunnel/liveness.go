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
