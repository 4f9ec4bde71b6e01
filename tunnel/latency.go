package tunnel

import (
	"fmt"
	"math"
	"time"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
)

// latencyPings is how many pings measure a relay; the smallest round trip is
// its latency, being the one least disturbed by queues and scheduling.
const latencyPings = 5

// measureLatency pings the relay on ctrl, which nothing else reads yet (the
// session's reader starts later), one ping at a time, and returns the
// smallest round trip. All the pings must be answered within timeout.
func measureLatency(ctrl *mux.Conn, pings int, timeout time.Duration) (time.Duration, error) {
	ctrl.SetDeadline(time.Now().Add(timeout))
	defer ctrl.SetDeadline(time.Time{})
	best := time.Duration(math.MaxInt64)
	for seq := uint64(1); seq <= uint64(pings); seq++ {
		start := time.Now()
		if err := ctrl.Send(&mux.Ping{Seq: seq}); err != nil {
			return 0, fmt.Errorf("measuring latency: %w", err)
		}
		if err := awaitPong(ctrl, seq); err != nil {
			return 0, err
		}
		best = min(best, max(time.Since(start), time.Nanosecond)) // never 0, which means unmeasured
	}
	return best, nil
}

// awaitPong reads until the pong for seq. The relay sends nothing else
// unasked at this point but its reasons to end the session.
func awaitPong(ctrl *mux.Conn, seq uint64) error {
	for {
		m, err := ctrl.Recv()
		if err != nil {
			return fmt.Errorf("measuring latency: %s", describeEnd(err))
		}
		switch m := m.(type) {
		case *mux.Pong:
			if m.Seq == seq {
				return nil
			}
		case *mux.Ping:
			ctrl.Send(&mux.Pong{Seq: m.Seq})
		case *mux.Error:
			return m
		case *mux.Close:
			return closedByRelay(m)
		}
	}
}

// recordRelay notes in the relay registry that the relay at addr answered,
// with its name and latency. A failure to write is logged: the session
// works without it.
func (n *Node) recordRelay(addr, name string, rtt time.Duration) {
	if n.cfg.Relays == nil {
		return
	}
	err := n.cfg.Relays.Upsert(registry.Server{Name: name, Address: addr, Latency: rtt, LastSeen: time.Now()})
	if err != nil {
		n.log.Error("recording the relay in the registry", "file", n.cfg.Relays.Path(), "err", err)
	}
}
