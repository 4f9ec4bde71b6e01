package tunnel

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2prc/p2prc/mux"
)

// What Status and the Observer report, as an operator's dashboard would
// show it.

// trafficOf finds the traffic of the mapping on port in a status.
func trafficOf(t *testing.T, st Status, port int) TrafficStats {
	t.Helper()
	for _, nd := range st.Nodes {
		for _, m := range nd.Mappings {
			if m.Port == port {
				return m.Traffic
			}
		}
	}
	t.Fatalf("no mapping on port %d in %s status %+v", port, st.Role, st)
	return TrafficStats{}
}

// waitTraffic waits until both relay and node report want for port.
func waitTraffic(t *testing.T, r *testRelay, n *testNode, port int, want TrafficStats) {
	t.Helper()
	var gotR, gotN TrafficStats
	ok := eventually(5*time.Second, func() bool {
		gotR, gotN = trafficOf(t, r.Relay.Status(), port), trafficOf(t, n.Node.Status(), port)
		return sameCounts(gotR, want) && sameCounts(gotN, want)
	})
	if !ok {
		t.Fatalf("traffic of port %d: relay %+v, node %+v; want %+v", port, gotR, gotN, want)
	}
}

func sameCounts(a, b TrafficStats) bool {
	return a.BytesIn == b.BytesIn && a.BytesOut == b.BytesOut && a.Connections == b.Connections
}

// The byte counters move while a connection is open, match what was sent
// exactly, keep counting on the next connection, and count only their own
// mapping.
func TestTrafficCountedWhileItFlows(t *testing.T) {
	leakCheck(t)
	echo, other := startEcho(t), startEcho(t)
	r := startRelay(t, relayOpts{})
	n, ms := startNode(t, r, []Expose{tcpExpose(echo), tcpExpose(other)}, nil)
	port, otherPort := portFor(t, ms, echo), portFor(t, ms, other)

	c := dialVisitor(t, port)
	first := payload(1, 300<<10)
	go c.Write(first)
	back := make([]byte, len(first))
	if _, err := io.ReadFull(c, back); err != nil || !bytes.Equal(back, first) {
		t.Fatalf("echo: %v", err)
	}
	// The visitor is still connected: the counts are already there.
	waitTraffic(t, r, n, port, TrafficStats{BytesIn: 300 << 10, BytesOut: 300 << 10, Connections: 1})

	second := payload(2, 77777)
	go func() {
		c.Write(second)
		c.CloseWrite()
	}()
	if rest, err := io.ReadAll(c); err != nil || !bytes.Equal(rest, second) {
		t.Fatalf("echo of the second part: %d bytes, %v", len(rest), err)
	}
	c.Close()
	total := uint64(len(first) + len(second))
	waitTraffic(t, r, n, port, TrafficStats{BytesIn: total, BytesOut: total})

	assertEcho(t, port) // a second visitor adds to the same counters
	waitTraffic(t, r, n, port, TrafficStats{BytesIn: total + 1000, BytesOut: total + 1000})
	if got := trafficOf(t, r.Relay.Status(), port).Visits; got != 2 {
		t.Errorf("relay counted %d visits, want 2", got)
	}
	waitTraffic(t, r, n, otherPort, TrafficStats{})
}

// Status lists a connected node with its mappings, and keeps listing it,
// disconnected, while its lease holds its port.
func TestStatusListsNodesAndMappings(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	cfg := nodeConfig(r, []Expose{tcpExpose(echo)})
	cfg.Name = "alpha"
	n := runNode(t, cfg)
	port := portFor(t, n.nextReady(t, 5*time.Second).Mappings, echo)

	st := r.Relay.Status()
	if st.Role != "relay" || st.Name != "test-relay" || st.Started.IsZero() || st.Sessions() != 1 || len(st.Nodes) != 1 {
		t.Fatalf("relay status %+v", st)
	}
	nd := st.Nodes[0]
	if nd.Name != "alpha" || nd.ID != n.Node.ID() || !nd.Connected || nd.Since.IsZero() || len(nd.Mappings) != 1 {
		t.Fatalf("relay's node entry %+v", nd)
	}
	if m := nd.Mappings[0]; m.Type != "TCP" || m.Port != port || m.Local != echo || m.Public != localAddr(port) || m.Created.IsZero() {
		t.Fatalf("relay's mapping entry %+v", m)
	}
	ns := n.Node.Status()
	if ns.Role != "node" || ns.RelayName != "test-relay" || ns.Relay != r.Addr || ns.Sessions() != 1 ||
		len(ns.Nodes) != 1 || len(ns.Nodes[0].Mappings) != 1 || ns.Nodes[0].Mappings[0].Port != port {
		t.Fatalf("node status %+v", ns)
	}

	n.Stop()
	if !eventually(5*time.Second, func() bool { return r.Relay.Status().Sessions() == 0 }) {
		t.Fatal("the relay still lists a session after the node stopped")
	}
	nd = r.Relay.Status().Nodes[0]
	if nd.Connected || nd.LastSeen.IsZero() || len(nd.Mappings) != 1 || nd.Mappings[0].Port != port {
		t.Fatalf("a node away within its lease: %+v; want it listed, disconnected, with its port", nd)
	}
	if ns := n.Node.Status(); ns.Sessions() != 0 || len(ns.Nodes[0].Mappings) != 1 {
		t.Fatalf("a stopped node's status %+v; want disconnected, with its last mappings", ns)
	}
}

// recorder is an Observer that writes down what it hears.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (o *recorder) add(e string) {
	o.mu.Lock()
	o.events = append(o.events, e)
	o.mu.Unlock()
}

func (o *recorder) count(e string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, got := range o.events {
		if got == e {
			n++
		}
	}
	return n
}

func (o *recorder) SessionOpened()             { o.add("session") }
func (o *recorder) Granted(network string)     { o.add("granted " + network) }
func (o *recorder) Refused(code mux.ErrorCode) { o.add("refused " + string(code)) }
func (o *recorder) AuthFailed()                { o.add("auth failed") }
func (o *recorder) Reconnecting()              { o.add("reconnecting") }
func (o *recorder) Handshake(d time.Duration)  { o.addHandshake(d) }
func (o *recorder) addHandshake(d time.Duration) {
	if d > 0 && d < 10*time.Second {
		o.add("handshake")
	} else {
		o.add("handshake out of bounds")
	}
}

// Grants, refusals, failed authentication, handshakes and reconnects reach
// the observers of both sides.
func TestObserverHearsEvents(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	relayObs := &recorder{}
	r := startRelay(t, relayOpts{Observer: relayObs})

	// A node with a wrong token.
	badObs := &recorder{}
	cfg := nodeConfig(r, []Expose{tcpExpose(echo)})
	cfg.Token, cfg.Observer = []byte("wrong"), badObs
	runNode(t, cfg).wait(t, 5*time.Second)
	// The node may try more than once: the relay's refusal can be lost
	// when it closes the session right after sending it.
	if !eventually(2*time.Second, func() bool { return relayObs.count("auth failed") >= 1 }) || badObs.count("auth failed") < 1 {
		t.Fatalf("auth failures: relay heard %v, node heard %v", relayObs.events, badObs.events)
	}

	// A node that is granted a port, then loses its relay's session and comes back.
	obs := &recorder{}
	cfg = nodeConfig(r, []Expose{tcpExpose(echo)})
	cfg.Observer = obs
	n := runNode(t, cfg)
	port := portFor(t, n.nextReady(t, 5*time.Second).Mappings, echo)
	dropSessions(r)
	n.nextReady(t, 5*time.Second)

	// Another node asking for that port.
	thief := nodeConfig(r, []Expose{{Network: "tcp", Local: echo, RemotePort: port}})
	thief.Observer = &recorder{}
	runNode(t, thief).wait(t, 5*time.Second)

	for _, c := range []struct {
		who  string
		obs  *recorder
		want map[string]int
	}{
		{"relay", relayObs, map[string]int{"session": 3, "handshake": 3, "granted tcp": 2, "refused owned": 1}},
		{"node", obs, map[string]int{"session": 2, "handshake": 2, "granted tcp": 2, "reconnecting": 1}},
		{"thief", thief.Observer.(*recorder), map[string]int{"session": 1, "refused owned": 1}},
	} {
		for e, want := range c.want {
			if got := c.obs.count(e); got != want {
				t.Errorf("%s heard %q %d times, want %d; all: %v", c.who, e, got, want, c.obs.events)
			}
		}
	}
}

// Logs say what happens to sessions and grants, one line each, and nothing
// per visitor connection at the info level.
func TestLogsOneLinePerEvent(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	n, ms := startNode(t, r, []Expose{tcpExpose(echo)}, nil)
	port := portFor(t, ms, echo)
	for want, log := range map[string]*logBuffer{"node connected": r.Logs, "granted": r.Logs, "connected to the relay": n.Logs, "exposed": n.Logs} {
		if got := logged(log, want); got != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", want, got, log)
		}
	}

	infoLines := func(lb *logBuffer) int {
		return strings.Count(lb.String(), "level=INFO") + strings.Count(lb.String(), "level=WARN")
	}
	relayBefore, nodeBefore := infoLines(r.Logs), infoLines(n.Logs)
	visitConcurrently(t, port, 20)
	dead := runNode(t, nodeConfig(r, []Expose{tcpExpose(localAddr(deadPort(t)))}))
	deadPortNum := dead.nextReady(t, 5*time.Second).Mappings[0].BlindPort
	relayBefore += 2 // the new node's session and grant
	// Each visitor is closed at once, perhaps before its dial returns.
	for range 5 {
		if c, err := net.DialTimeout("tcp", localAddr(deadPortNum), 2*time.Second); err == nil {
			expectClosed(t, c, 5*time.Second)
			c.Close()
		}
	}
	if got := infoLines(r.Logs); got != relayBefore {
		t.Errorf("the relay logged %d info lines for visitor connections, want none:\n%s", got-relayBefore, r.Logs)
	}
	if got := infoLines(n.Logs); got != nodeBefore {
		t.Errorf("the node logged %d info lines for visitor connections, want none:\n%s", got-nodeBefore, n.Logs)
	}

	dead.Stop()
	if !eventually(5*time.Second, func() bool { return logged(r.Logs, "node disconnected") == 1 }) {
		t.Fatalf("the relay did not log the session's end once:\n%s", r.Logs)
	}
	if !strings.Contains(r.Logs.String(), "reason=") {
		t.Errorf("the relay's disconnect line gives no reason:\n%s", r.Logs)
	}

	// A dropped session is told again each time, even for the same reason.
	for i := range 2 {
		dropSessions(r)
		n.nextReady(t, 5*time.Second)
		if got := n.Logs.count("lost the relay"); got != i+1 {
			t.Fatalf("after %d drops the node said %d times it was disconnected:\n%s", i+1, got, n.Logs)
		}
	}
}

// logged counts the lines with message msg in a text log.
func logged(lb *logBuffer, msg string) int {
	if strings.ContainsAny(msg, " =\"") {
		return lb.count("msg=\"" + msg + "\"")
	}
	return lb.count("msg=" + msg + " ")
}

// dropSessions closes every session of the relay, as a failing network would.
func dropSessions(r *testRelay) {
	r.Relay.mu.Lock()
	var all []*relaySession
	for _, s := range r.Relay.sessions {
		all = append(all, s)
	}
	r.Relay.mu.Unlock()
	for _, s := range all {
		s.close(mux.CodeInternal, "test: dropped")
	}
}
