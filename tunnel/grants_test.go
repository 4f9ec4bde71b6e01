package tunnel

import (
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2prc/p2prc/mux"
)

// Which port a node gets, keeps and loses, as the node and the mapping file
// show it.

// wantRefusal checks that err is a fatal refusal with code.
func wantRefusal(t *testing.T, err error, code mux.ErrorCode) {
	t.Helper()
	var refused *mux.Error
	if !errors.As(err, &refused) || refused.Code != code || !refused.Fatal() || !isFatal(err) {
		t.Fatalf("node Run returned %v (%T); want a fatal *mux.Error with code %q", err, err, code)
	}
}

func TestWrongTokenIsFatal(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	cfg := nodeConfig(r, []Expose{tcpExpose(echo)})
	cfg.Token = []byte("not-the-relay-token")
	n := runNode(t, cfg)
	wantRefusal(t, n.wait(t, 5*time.Second), mux.CodeAuth)
	if got := fileMappings(t, r.MapsPath); len(got) != 0 {
		t.Fatalf("the relay's mapping file holds %+v after a refused node", got)
	}
	if got := r.Maps.List(); len(got) != 0 {
		t.Fatalf("the relay's mapping table holds %+v after a refused node", got)
	}
	if !eventually(2*time.Second, func() bool { return r.Logs.count("node handshake failed") > 0 }) {
		t.Error("the relay did not log the failed handshake")
	}
}

// A wanted port that another program holds on the relay host is refused
// with in_use; the node keeps asking, without exiting, and gets the port
// once it is free.
func TestWantedPortInUseIsRetried(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	wanted := r.Ports.Lo + 7
	free := occupy(t, wanted)

	n := runNode(t, nodeConfig(r, []Expose{{Network: "tcp", Local: echo, RemotePort: wanted}}))
	// Several refusals in a row: the node is retrying, and still running.
	if !eventually(5*time.Second, func() bool { return r.Logs.count("code=in_use") >= 3 }) {
		t.Fatalf("the relay refused %d times with in_use, want ≥ 3", r.Logs.count("code=in_use"))
	}
	select {
	case c := <-n.ready:
		t.Fatalf("the node reported ready with %+v while its only port is taken", c.Mappings)
	default:
	}
	if !n.running() {
		t.Fatalf("the node exited on a refusal that retrying can fix: %v", n.err)
	}
	if n.Logs.count("relay refused for now") != 1 || !strings.Contains(n.Logs.String(), "in use") {
		t.Errorf("the node should say once that the port is in use and it will ask again")
	}
	if ms := fileMappings(t, r.MapsPath); len(ms) != 0 {
		t.Fatalf("mapping file holds %+v for a refused port", ms)
	}

	free()
	c := n.nextReady(t, 5*time.Second)
	if got := portFor(t, c.Mappings, echo); got != wanted {
		t.Fatalf("granted %d once free, want %d", got, wanted)
	}
	assertEcho(t, wanted)
}

// Without a wanted port, a port taken on the host is skipped.
func TestChosenPortSkipsPortInUse(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	whole := freeRange(t, 2)
	occupy(t, whole.Lo)
	r := startRelay(t, relayOpts{Ports: whole})
	_, ms := startNode(t, r, []Expose{tcpExpose(echo)}, nil)
	if got := portFor(t, ms, echo); got != whole.Hi {
		t.Fatalf("granted %d, want %d, the only port free in %v", got, whole.Hi, whole)
	}
	assertEcho(t, whole.Hi)
}

// A port another node owns cannot be taken: the asking node exits, and the
// owner's port keeps working.
func TestWantedPortOwnedByAnotherNodeIsFatal(t *testing.T) {
	leakCheck(t)
	echoA, echoB := startEcho(t), startEcho(t)
	r := startRelay(t, relayOpts{})
	_, ms := startNode(t, r, []Expose{tcpExpose(echoA)}, nil)
	port := portFor(t, ms, echoA)

	b := runNode(t, nodeConfig(r, []Expose{{Network: "tcp", Local: echoB, RemotePort: port}}))
	err := b.wait(t, 5*time.Second)
	wantRefusal(t, err, mux.CodeOwned)
	if !strings.Contains(err.Error(), "owned by another node") {
		t.Errorf("the error %q does not say the port is someone else's", err)
	}
	assertEcho(t, port)
	ms = fileMappings(t, r.MapsPath)
	if len(ms) != 1 || ms[0].BlindPort != port || ms[0].Local != echoA {
		t.Fatalf("mapping file holds %+v; want only node A's port %d", ms, port)
	}
}

// A node that leaves and comes back with the same identity and expose gets
// the same port.
func TestSamePortAfterReconnect(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	key := newKey(t)
	first, ms := startNode(t, r, []Expose{tcpExpose(echo)}, key)
	port := portFor(t, ms, echo)
	if err := first.Stop(); err != nil {
		t.Fatalf("node Run = %v after cancel, want nil", err)
	}
	_, ms = startNode(t, r, []Expose{tcpExpose(echo)}, key)
	if got := portFor(t, ms, echo); got != port {
		t.Fatalf("came back to port %d, had %d", got, port)
	}
	assertEcho(t, port)
	if ms := fileMappings(t, r.MapsPath); len(ms) != 1 {
		t.Fatalf("mapping file holds %d mappings, want 1: %+v", len(ms), ms)
	}
}

// A second session of the same identity takes over at once, never fighting
// its own ghost; the first is told it was replaced and exits.
func TestNewSessionReplacesGhost(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	key := newKey(t)
	ghost, ms := startNode(t, r, []Expose{tcpExpose(echo)}, key)
	port := portFor(t, ms, echo)

	start := time.Now()
	_, ms = startNode(t, r, []Expose{tcpExpose(echo)}, key)
	if got := portFor(t, ms, echo); got != port {
		t.Fatalf("the new session got port %d, the old one held %d", got, port)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the new session waited %v for its own port", d)
	}
	wantRefusal(t, ghost.wait(t, 3*time.Second), mux.CodeReplaced)
	assertEcho(t, port)
}

// While its node is away, a port is kept (bound, visitors refused at once);
// when the lease runs out it is freed.
func TestLeaseKeepsThenFreesPort(t *testing.T) {
	leakCheck(t)
	const lease = 400 * time.Millisecond
	echo := startEcho(t)
	r := startRelay(t, relayOpts{Lease: lease})
	n, ms := startNode(t, r, []Expose{tcpExpose(echo)}, nil)
	port := portFor(t, ms, echo)
	assertEcho(t, port)
	left := time.Now() // before the relay can notice: its lease clock starts later
	n.Stop()

	// Visitors are refused at once: reset during or just after connecting.
	// A refused connect (nothing listening) would mean the port was let go.
	for range 3 {
		c, err := net.DialTimeout("tcp", localAddr(port), time.Second)
		if err != nil {
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("visitor dial within the lease: %v, want a reset", err)
			}
			continue
		}
		t.Cleanup(func() { c.Close() })
		expectClosed(t, c, time.Second)
	}
	if !listenFails(port) {
		t.Error("the port could be bound by another program while its lease runs")
	}
	if ms := fileMappings(t, r.MapsPath); len(ms) != 1 || ms[0].BlindPort != port {
		t.Errorf("within the lease the mapping file holds %+v, want port %d", ms, port)
	}
	if d := time.Since(left); d >= lease {
		t.Fatalf("the checks within the lease took %v, longer than the lease", d)
	}

	if !eventually(3*time.Second, func() bool { return len(fileMappings(t, r.MapsPath)) == 0 }) {
		t.Fatalf("mapping file still holds %+v %v after the lease", fileMappings(t, r.MapsPath), time.Since(left))
	}
	if time.Since(left) < lease {
		t.Errorf("the mapping went %v after the node left, before the %v lease ran out", time.Since(left), lease)
	}
	if !eventually(time.Second, func() bool { return !listenFails(port) }) {
		t.Fatal("the port is still bound after its lease ran out")
	}
}

// A relay restarted on the same mapping file keeps every mapped port bound
// for its node and gives a reconnecting node its port back; traffic flows
// again.
func TestRelayRestartGivesPortBack(t *testing.T) {
	leakCheck(t)
	echo, echoAway := startEcho(t), startEcho(t)
	r := startRelay(t, relayOpts{})
	n, ms := startNode(t, r, []Expose{tcpExpose(echo)}, nil)
	port := portFor(t, ms, echo)
	assertEcho(t, port)
	// A second node, away during the restart: its port must stay reserved.
	away, ms := startNode(t, r, []Expose{tcpExpose(echoAway)}, nil)
	awayPort := portFor(t, ms, echoAway)
	away.Stop()

	r.Stop()
	if _, err := os.Stat(r.MapsPath); err != nil {
		t.Fatal(err)
	}
	r2 := startRelay(t, relayOpts{Ports: r.Ports, Addr: r.Addr, MapsPath: r.MapsPath})
	c := n.nextReady(t, 5*time.Second)
	if got := portFor(t, c.Mappings, echo); got != port {
		t.Fatalf("after the relay restart the node got port %d, had %d", got, port)
	}
	assertEcho(t, port)
	if !eventually(2*time.Second, func() bool { return listenFails(awayPort) }) {
		t.Fatalf("the restarted relay did not keep port %d bound for its absent node", awayPort)
	}
	ms = fileMappings(t, r2.MapsPath)
	if len(ms) != 2 || ms[0].BlindPort == ms[1].BlindPort {
		t.Fatalf("mapping file holds %+v, want ports %d and %d", ms, port, awayPort)
	}
	for _, m := range ms {
		if m.BlindPort != port && m.BlindPort != awayPort {
			t.Fatalf("mapping file holds %+v, want ports %d and %d", ms, port, awayPort)
		}
	}
	if n.Logs.count("reconnecting") == 0 {
		t.Error("the node did not say it was reconnecting")
	}
}

// A port taken by another program while the relay was down is reported to
// its node, which keeps asking; it is not silently swapped for another.
func TestPortTakenDuringRestartIsReportedNotSwapped(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	n, ms := startNode(t, r, []Expose{tcpExpose(echo)}, nil)
	port := portFor(t, ms, echo)
	r.Stop()

	free := occupy(t, port) // another program takes the port meanwhile
	r2 := startRelay(t, relayOpts{Ports: r.Ports, Addr: r.Addr, MapsPath: r.MapsPath})
	if !eventually(5*time.Second, func() bool { return n.Logs.count("keeps for you") > 0 }) {
		t.Fatalf("the node was not told its port is taken; node log:\n%s", n.Logs)
	}
	if !n.running() {
		t.Fatalf("the node gave up: %v", n.err)
	}
	if ms := fileMappings(t, r2.MapsPath); len(ms) != 1 || ms[0].BlindPort != port {
		t.Fatalf("mapping file holds %+v, want only port %d", ms, port)
	}
	free()
	c := n.nextReady(t, 10*time.Second)
	if got := portFor(t, c.Mappings, echo); got != port {
		t.Fatalf("once free again the node got port %d, want %d", got, port)
	}
	assertEcho(t, port)
}
