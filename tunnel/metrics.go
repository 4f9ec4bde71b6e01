package tunnel

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2prc/p2prc/mux"
)

// Observer hears of a relay's or a node's events, to count them (the
// metrics of cmd/p2prc implement it with Prometheus). Calls come from the
// goroutine where the event happens: they must be quick and never block.
// What is a state rather than an event — sessions, mappings, traffic — is
// read from Relay.Status and Node.Status instead.
type Observer interface {
	// SessionOpened: a node authenticated (relay), or this node did (node).
	SessionOpened()
	// Granted: a port was granted (relay) or a grant arrived (node).
	Granted(network string)
	// Refused: a request for a port was refused, with the code sent or received.
	Refused(code mux.ErrorCode)
	// AuthFailed: a node failed to prove it holds the token (relay), or the
	// relay refused our proof or failed to prove its own (node).
	AuthFailed()
	// Reconnecting: the node lost or could not reach its relay and waits
	// to try again.
	Reconnecting()
	// Handshake: a handshake succeeded after d, from the first message of
	// the control stream to the welcome.
	Handshake(d time.Duration)
}

// nopObserver is the Observer of a relay or node configured without one.
type nopObserver struct{}

func (nopObserver) SessionOpened()          {}
func (nopObserver) Granted(string)          {}
func (nopObserver) Refused(mux.ErrorCode)   {}
func (nopObserver) AuthFailed()             {}
func (nopObserver) Reconnecting()           {}
func (nopObserver) Handshake(time.Duration) {}

// Traffic counts what flows through one mapping, while it flows: the copy
// loops add each chunk as soon as it is written on. It is safe for
// concurrent use, and a nil *Traffic counts nothing, so code that carries
// bytes for a mapping need not care whether anyone watches.
//
// "In" is what visitors send towards the node's local service, "out" what
// comes back to them, on the relay and on the node alike.
//
// A mapping's Traffic is r.traffic.of(portKey{network, port}) on the relay
// and n.traffic.of(...) on the node: TCP pipes count through countAtRelay
// and countAtNode; other carriers (UDP) call AddIn, AddOut, FlowOpened and
// FlowClosed themselves.
type Traffic struct {
	in, out atomic.Uint64
	conns   atomic.Int64  // visitor TCP connections open now
	flows   atomic.Int64  // UDP flows live now
	visits  atomic.Uint64 // visitor TCP connections ever carried
}

// AddIn counts n bytes carried from a visitor towards the local service.
func (t *Traffic) AddIn(n int) {
	if t != nil && n > 0 {
		t.in.Add(uint64(n))
	}
}

// AddOut counts n bytes carried from the local service back to a visitor.
func (t *Traffic) AddOut(n int) {
	if t != nil && n > 0 {
		t.out.Add(uint64(n))
	}
}

// ConnOpened counts a visitor TCP connection; ConnClosed must follow.
func (t *Traffic) ConnOpened() {
	if t != nil {
		t.conns.Add(1)
		t.visits.Add(1)
	}
}

// ConnClosed counts the end of a visitor TCP connection.
func (t *Traffic) ConnClosed() {
	if t != nil {
		t.conns.Add(-1)
	}
}

// FlowOpened counts a new UDP flow (one visitor address); FlowClosed must
// follow when it expires or ends.
func (t *Traffic) FlowOpened() {
	if t != nil {
		t.flows.Add(1)
	}
}

// FlowClosed counts the end of a UDP flow.
func (t *Traffic) FlowClosed() {
	if t != nil {
		t.flows.Add(-1)
	}
}

// Stats returns the counts now.
func (t *Traffic) Stats() TrafficStats {
	if t == nil {
		return TrafficStats{}
	}
	return TrafficStats{
		BytesIn:     t.in.Load(),
		BytesOut:    t.out.Load(),
		Connections: t.conns.Load(),
		Flows:       t.flows.Load(),
		Visits:      t.visits.Load(),
	}
}

// TrafficStats is a snapshot of a Traffic.
type TrafficStats struct {
	BytesIn     uint64 `json:"bytes_in"`    // from visitors towards the local service
	BytesOut    uint64 `json:"bytes_out"`   // from the local service to visitors
	Connections int64  `json:"connections"` // visitor TCP connections open now
	Flows       int64  `json:"udp_flows"`   // UDP flows live now
	Visits      uint64 `json:"visits"`      // visitor TCP connections carried so far
}

// trafficTable holds the Traffic of each mapping by public port. A mapping
// keeps its counters across the sessions of its node, so they only ever
// grow while the mapping lives; forget drops them with the mapping.
type trafficTable struct {
	mu sync.Mutex
	m  map[portKey]*Traffic
}

// of returns the Traffic of the mapping on key, creating it if needed.
func (tt *trafficTable) of(key portKey) *Traffic {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.m[key]
	if t == nil {
		if tt.m == nil {
			tt.m = make(map[portKey]*Traffic)
		}
		t = new(Traffic)
		tt.m[key] = t
	}
	return t
}

// stats returns the counts of the mapping on key (zero if none were kept).
func (tt *trafficTable) stats(key portKey) TrafficStats {
	tt.mu.Lock()
	t := tt.m[key]
	tt.mu.Unlock()
	return t.Stats()
}

// forget drops the counters of a mapping that is gone.
func (tt *trafficTable) forget(key portKey) {
	tt.mu.Lock()
	delete(tt.m, key)
	tt.mu.Unlock()
}

// keepOnly drops the counters of every mapping not in keep.
func (tt *trafficTable) keepOnly(keep map[portKey]bool) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for k := range tt.m {
		if !keep[k] {
			delete(tt.m, k)
		}
	}
}

// countAtRelay makes p count into t. At the relay, conn is the visitor's.
func (t *Traffic) countAtRelay(p *pipe) {
	if t != nil {
		p.fromConn, p.fromStream = &t.in, &t.out
	}
}

// countAtNode makes p count into t. At the node, conn is the local service's.
func (t *Traffic) countAtNode(p *pipe) {
	if t != nil {
		p.fromConn, p.fromStream = &t.out, &t.in
	}
}
