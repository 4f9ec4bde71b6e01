package tunnel

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
)

// A node sees, keeps and closes only its own mappings.

// Another node can neither release nor take a port; the owner's port keeps
// working and stays in the relay's file.
func TestAnotherNodeCannotReleaseOrTakeAPort(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	_, ms := startNode(t, r, []Expose{tcpExpose(echo)}, nil)
	port := portFor(t, ms, echo)

	thief := rawAuthed(t, r, nil)
	thief.Send(&mux.Release{ID: 7, Network: "tcp", Port: port})
	e := wantError(t, recvReply(t, thief), 7, mux.CodeOwned)
	if !strings.Contains(e.Text, "another node") {
		t.Errorf("refusal %q does not say the port is another node's", e.Text)
	}
	thief.Send(&mux.Expose{ID: 8, Network: "tcp", Local: "127.0.0.1:1", WantedPort: port})
	wantError(t, recvReply(t, thief), 8, mux.CodeOwned)
	unmapped := r.Ports.Lo
	if unmapped == port {
		unmapped++
	}
	thief.Send(&mux.Release{ID: 9, Network: "tcp", Port: unmapped})
	wantError(t, recvReply(t, thief), 9, mux.CodeBadRequest)

	assertEcho(t, port)
	got := fileMappings(t, r.MapsPath)
	if len(got) != 1 || got[0].BlindPort != port || got[0].Local != echo {
		t.Fatalf("relay's mapping file holds %+v; want only the owner's port %d", got, port)
	}
}

// A node's own mapping file lists its mappings, never another node's.
func TestNodeFileHoldsOnlyItsOwnMappings(t *testing.T) {
	leakCheck(t)
	echoA, echoB := startEcho(t), startEcho(t)
	r := startRelay(t, relayOpts{})
	_, msA := startNode(t, r, []Expose{tcpExpose(echoA)}, nil)

	path := filepath.Join(t.TempDir(), registry.MappingFileName)
	own, err := registry.OpenMappings(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := nodeConfig(r, []Expose{tcpExpose(echoB)})
	cfg.Mappings = own
	b := runNode(t, cfg)
	msB := b.nextReady(t, 5*time.Second).Mappings
	got := fileMappings(t, path)
	if len(got) != 1 || got[0].BlindPort != portFor(t, msB, echoB) || got[0].BlindPort == portFor(t, msA, echoA) {
		t.Fatalf("node B's file holds %+v; want only B's mapping", got)
	}
}

// A node releases its own port: the relay closes it, forgets it, and
// another node may have it; the releasing node's file forgets it too.
func TestNodeReleasesItsOwnPort(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	key := newKey(t)
	path := filepath.Join(t.TempDir(), registry.MappingFileName)
	own, err := registry.OpenMappings(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := nodeConfig(r, []Expose{tcpExpose(echo)})
	cfg.Key, cfg.Mappings = key, own
	n := runNode(t, cfg)
	port := portFor(t, n.nextReady(t, 5*time.Second).Mappings, echo)
	n.Stop()

	cfg.Exposes, cfg.Release = nil, []PublicPort{{Network: "tcp", Port: port}}
	rel := runNode(t, cfg)
	if err := rel.wait(t, 5*time.Second); err != nil {
		t.Fatalf("releasing: %v", err)
	}
	if !eventually(2*time.Second, func() bool { return !listenFails(port) }) {
		t.Fatalf("port %d is still bound on the relay after its release", port)
	}
	if ms := fileMappings(t, r.MapsPath); len(ms) != 0 {
		t.Fatalf("relay's file holds %+v after the release", ms)
	}
	if ms := fileMappings(t, path); len(ms) != 0 {
		t.Fatalf("node's file holds %+v after the release", ms)
	}
	// Released means free for anyone.
	other := runNode(t, nodeConfig(r, []Expose{{Network: "tcp", Local: echo, RemotePort: port}}))
	assertEcho(t, portFor(t, other.nextReady(t, 5*time.Second).Mappings, echo))
}

// A live session may release a port it serves: visitors are refused at once.
func TestReleaseWhileConnected(t *testing.T) {
	leakCheck(t)
	r := startRelay(t, relayOpts{})
	ctrl := rawAuthed(t, r, nil)
	ctrl.Send(&mux.Expose{ID: 1, Network: "tcp", Local: "127.0.0.1:9"})
	g, ok := recvReply(t, ctrl).(*mux.Grant)
	if !ok {
		t.Fatal("no grant")
	}
	ctrl.Send(&mux.Release{ID: 2, Network: "tcp", Port: g.Port})
	if m, ok := recvReply(t, ctrl).(*mux.Release); !ok || m.ID != 2 || m.Port != g.Port {
		t.Fatalf("answer %+v; want the release confirmed", m)
	}
	if !eventually(2*time.Second, func() bool { return !listenFails(g.Port) }) {
		t.Fatalf("port %d still bound after its release", g.Port)
	}
	// Releasing it again: nothing to release.
	ctrl.Send(&mux.Release{ID: 3, Network: "tcp", Port: g.Port})
	wantError(t, recvReply(t, ctrl), 3, mux.CodeBadRequest)
}

// A release refused (another node's port) ends a --release run with the
// relay's reason.
func TestReleaseOfAnotherNodesPortIsFatal(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	_, ms := startNode(t, r, []Expose{tcpExpose(echo)}, nil)
	port := portFor(t, ms, echo)
	cfg := nodeConfig(r, nil)
	cfg.Release = []PublicPort{{Network: "tcp", Port: port}}
	err := runNode(t, cfg).wait(t, 5*time.Second)
	wantRefusal(t, err, mux.CodeOwned)
	assertEcho(t, port)
}

func TestParsePublicPort(t *testing.T) {
	for in, want := range map[string]PublicPort{"tcp:30022": {"tcp", 30022}, "UDP:1": {"udp", 1}} {
		if got, err := ParsePublicPort(in); err != nil || got != want {
			t.Errorf("ParsePublicPort(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "tcp", "tcp:", "tcp:0", "tcp:65536", "sctp:1", "30022", "tcp:+1"} {
		if _, err := ParsePublicPort(in); err == nil || !strings.Contains(err.Error(), "--release") {
			t.Errorf("ParsePublicPort(%q): err %v; want one naming --release", in, err)
		}
	}
}

// A relay cannot make a node hold more than maxNodeStreams visitor streams:
// beyond them, a stream is closed at once.
func TestNodeCapsStreamsFromRelay(t *testing.T) {
	leakCheck(t)
	defer func(old int64) { maxNodeStreams = old }(maxNodeStreams)
	maxNodeStreams = 2
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	echo := startEcho(t)
	n := runNode(t, NodeConfig{Relay: ln.Addr().String(), Exposes: []Expose{tcpExpose(echo)}, Token: testToken,
		HandshakeTimeout: 2 * time.Second, PeerTimeout: 3 * time.Second, Once: true})

	// A hand-driven relay: handshake, grant, then streams that never send a header.
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ym, err := mux.Server(mux.NewWire(c), mux.SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer ym.Close()
	st, err := ym.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	ctrl := mux.NewConn(st, 0)
	if _, err := ctrl.RelayHandshake(mux.RelayAuth{Name: "fake", PublicHost: "127.0.0.1", Token: testToken}, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	m := recvReply(t, ctrl).(*mux.Expose)
	ctrl.Send(&mux.Grant{ID: m.ID, Network: "tcp", Port: 30000, PublicHost: "127.0.0.1", Relay: "fake"})
	n.nextReady(t, 5*time.Second)
	var streams []*yamux.Stream
	for range 3 {
		s, err := ym.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte{1}) // half a header: the node waits for the rest
		streams = append(streams, s)
	}
	streams[2].SetReadDeadline(time.Now().Add(time.Second)) // well before the 2 s header deadline
	if _, err := streams[2].Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("third stream: %v; want it closed at once", err)
	}
	for _, s := range streams[:2] {
		s.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := s.Read(make([]byte, 1)); !errors.Is(err, yamux.ErrTimeout) {
			t.Fatalf("a stream within the cap: %v; want it still waiting for its header", err)
		}
	}
}

// `p2prc node --release` beside a running node of the same identity gives
// the port up without disturbing the running node.
func TestReleaseBesideRunningNode(t *testing.T) {
	leakCheck(t)
	echo, echo2 := startEcho(t), startEcho(t)
	r := startRelay(t, relayOpts{})
	key := newKey(t)
	old, ms := startNode(t, r, []Expose{tcpExpose(echo2)}, key)
	stale := portFor(t, ms, echo2)
	old.Stop()
	cfg := nodeConfig(r, []Expose{tcpExpose(echo)})
	cfg.Key = key
	running := runNode(t, cfg)
	port := portFor(t, running.nextReady(t, 5*time.Second).Mappings, echo)

	rc := nodeConfig(r, nil)
	rc.Key = key
	rc.Release = []PublicPort{{Network: "tcp", Port: stale}}
	if err := runNode(t, rc).wait(t, 5*time.Second); err != nil {
		t.Fatalf("release run: %v", err)
	}
	if _, held := r.Maps.Lookup("tcp", stale); held {
		t.Errorf("port %d is still mapped after its release", stale)
	}
	time.Sleep(200 * time.Millisecond)
	if !running.running() {
		t.Fatalf("the running node exited: %v", running.err)
	}
	assertEcho(t, port)
}
