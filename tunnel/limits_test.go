package tunnel

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2prc/p2prc/mux"
)

// Each limit refuses the one too many, says so to the peer, and counts it
// in the relay's log; nobody else is disturbed.

// wantLimitLogged waits for the relay's log line and count for limit.
func wantLimitLogged(t *testing.T, r *testRelay, limit string) {
	t.Helper()
	if !eventually(3*time.Second, func() bool { return r.Logs.count("limit="+limit) > 0 && r.Relay.Refusals()[limit] > 0 }) {
		t.Fatalf("no counted log line for %s; refusals %v", limit, r.Relay.Refusals())
	}
}

func TestSessionsPerAddressLimit(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{Limits: Limits{SessionsPerAddress: 2}})
	a, _ := startNode(t, r, []Expose{tcpExpose(echo)}, nil)
	startNode(t, r, []Expose{tcpExpose(echo)}, nil)

	c := runNode(t, nodeConfig(r, []Expose{tcpExpose(echo)}))
	wantLimitLogged(t, r, limitSessionsPerAddress)
	if !eventually(3*time.Second, func() bool { return strings.Contains(c.Logs.String(), "--max-sessions-per-address") }) {
		t.Fatal("the refused node was not told which limit refused it")
	}
	if !c.running() {
		t.Fatalf("a node refused by a limit that frees by itself exited: %v", c.err)
	}
	a.Stop()
	assertEcho(t, portFor(t, c.nextReady(t, 5*time.Second).Mappings, echo))
}

func TestAuthFailuresPerAddressLimit(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{Limits: Limits{AuthFailuresPerMinute: 2}})
	for range 2 {
		cfg := nodeConfig(r, []Expose{tcpExpose(echo)})
		cfg.Token = []byte("guess")
		wantRefusal(t, runNode(t, cfg).wait(t, 5*time.Second), mux.CodeAuth)
	}
	// The relay records a failure before it logs it.
	if !eventually(2*time.Second, func() bool { return r.Logs.count("node handshake failed") == 2 }) {
		t.Fatal("the relay did not log both failed handshakes")
	}
	// Now even the right token is turned away from this address, for now.
	n := runNode(t, nodeConfig(r, []Expose{tcpExpose(echo)}))
	wantLimitLogged(t, r, limitAuthFailures)
	if !eventually(3*time.Second, func() bool { return strings.Contains(n.Logs.String(), "failed authentications") }) {
		t.Fatal("the refused node was not told why")
	}
	if !n.running() {
		t.Fatalf("the node exited: %v", n.err)
	}
	if ms := fileMappings(t, r.MapsPath); len(ms) != 0 {
		t.Fatalf("mappings %+v while refused", ms)
	}
}

// The failure bucket drains at the configured rate: one more attempt per
// 1/rate minutes, never a burst.
func TestAuthFailureBucketDrains(t *testing.T) {
	a := &admission{limits: Limits{SessionsPerAddress: 10, PendingHandshakes: 10, AuthFailuresPerMinute: 6}}
	key := netip.MustParsePrefix("203.0.113.7/32")
	other := netip.MustParsePrefix("198.51.100.1/32")
	t0 := time.Unix(1000, 0)
	for range 6 {
		a.authFailed(key, t0)
	}
	check := func(at time.Duration, k netip.Prefix, want verdict) {
		t.Helper()
		tk := a.admit(k, t0.Add(at))
		if tk.verdict != want {
			t.Errorf("at +%v: verdict %v, want %v", at, tk.verdict, want)
		}
		tk.done(t0.Add(at))
	}
	check(0, key, refuseWithWords)
	check(0, other, admitted)
	check(5*time.Second, key, refuseWithWords)
	check(11*time.Second, key, admitted) // 6 a minute: one drains every 10 s
	a.authFailed(key, t0.Add(11*time.Second))
	check(12*time.Second, key, refuseWithWords)
	check(time.Minute+12*time.Second, key, admitted)
	if a.admit(key, t0.Add(10*time.Minute)).done(t0.Add(10 * time.Minute)); len(a.sources) != 0 {
		t.Errorf("%d sources tracked once everything drained; want 0", len(a.sources))
	}
}

// IPv6 sources are grouped by /64; IPv4-mapped addresses count as IPv4.
func TestSourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7:5000":          "203.0.113.7/32",
		"[::ffff:203.0.113.7]:5000": "203.0.113.7/32",
		"[2001:db8:1:2:3:4:5:6]:7":  "2001:db8:1:2::/64",
	} {
		addr, _ := net.ResolveTCPAddr("tcp", in)
		if got := sourceKey(addr).String(); got != want {
			t.Errorf("sourceKey(%s) = %s, want %s", in, got, want)
		}
	}
}

// Connections that never finish their handshake hold a place until the
// handshake timeout; beyond PendingHandshakes, new ones are closed at once.
func TestPendingHandshakesLimitAndTimeout(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{Limits: Limits{PendingHandshakes: 2}})
	var silent []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", r.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		silent = append(silent, c)
	}
	// Both are counted once the relay has accepted them.
	if !eventually(2*time.Second, func() bool { return pendingHandshakes(r) == 2 }) {
		t.Fatalf("the relay counts %d connections in their handshake, want 2", pendingHandshakes(r))
	}
	extra, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	expectClosed(t, extra, time.Second) // well before the 2 s handshake timeout
	wantLimitLogged(t, r, limitPendingHandshakes)
	for _, c := range silent {
		expectClosed(t, c, 5*time.Second)
	}
	wantLimitLogged(t, r, limitHandshakeTimeout)
	_, ms := startNode(t, r, []Expose{tcpExpose(echo)}, nil)
	assertEcho(t, portFor(t, ms, echo))
}

// pendingHandshakes is how many connections the relay counts as still in
// their handshake.
func pendingHandshakes(r *testRelay) int {
	r.Relay.admission.mu.Lock()
	defer r.Relay.admission.mu.Unlock()
	return r.Relay.admission.pending
}

// A relay that shuts down does not wait for silent connections' handshake
// deadline.
func TestShutdownCutsSilentConnectionsShort(t *testing.T) {
	leakCheck(t)
	cfg, _ := selfSigned(t)
	r := startRelay(t, relayOpts{TLS: cfg})
	c, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !eventually(2*time.Second, func() bool { return pendingHandshakes(r) == 1 }) {
		t.Fatalf("the relay counts %d connections in their handshake, want 1", pendingHandshakes(r))
	}
	start := time.Now()
	r.Stop()
	if took := time.Since(start); took >= time.Second { // the harness's handshake timeout is 2 s
		t.Fatalf("Serve took %v to return with a silent connection open", took)
	}
	expectClosed(t, c, time.Second)
}

// Garbage, a plaintext HTTP request, a silent TLS client and an oversized
// handshake frame are each closed; a connected node is not disturbed.
func TestBadConnectionsDoNotDisturbOthers(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	cfg, fp := selfSigned(t)
	r := startRelay(t, relayOpts{TLS: cfg})
	n := runNode(t, tlsNodeConfig(r, echo, &NodeTLS{Fingerprint: fp}))
	port := portFor(t, n.nextReady(t, 5*time.Second).Mappings, echo)

	http, _ := net.Dial("tcp", r.Addr)
	defer http.Close()
	io.WriteString(http, "GET / HTTP/1.1\r\nHost: relay\r\n\r\n")
	expectClosed(t, http, time.Second)

	zeros, _ := net.Dial("tcp", r.Addr)
	defer zeros.Close()
	zeros.Write(make([]byte, 64<<10)) // looks like yamux version 0, but is not a session
	expectClosed(t, zeros, 5*time.Second)

	tc, err := tls.Dial("tcp", r.Addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	expectClosed(t, tc, 5*time.Second) // TLS done, then silence: the handshake deadline

	// An authenticated-looking hello too large for a handshake.
	st, ctrl := rawConnect(t, r.Addr, &tls.Config{InsecureSkipVerify: true})
	var hdr [5]byte
	hdr[0] = byte(mux.TypeHello)
	binary.BigEndian.PutUint32(hdr[1:], mux.HandshakeMaxFrame+1)
	st.Write(append(hdr[:], make([]byte, mux.HandshakeMaxFrame+1)...))
	if _, err := ctrl.Recv(); !isClosedErr(err) {
		t.Fatalf("after an oversized hello: %v; want the session closed", err)
	}

	assertEcho(t, port)
	if got := r.Relay.Sessions(); got != 1 || !n.running() {
		t.Fatalf("%d sessions, node running %v; the node was disturbed", got, n.running())
	}
	wantLimitLogged(t, r, limitHandshakeTimeout)
}

// After the handshake, a frame above MaxFrameSize closes the session with
// code limit naming the flag; other nodes are not disturbed.
func TestFrameSizeLimit(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{Limits: Limits{MaxFrameSize: 8 << 10}})
	_, ms := startNode(t, r, []Expose{tcpExpose(echo)}, nil)
	ctrl := rawAuthed(t, r, nil)
	ctrl.Send(&mux.Expose{ID: 1, Network: "tcp", Local: strings.Repeat("x", 9<<10)})
	m := recvReply(t, ctrl)
	cl, ok := m.(*mux.Close)
	if !ok || cl.Code != mux.CodeLimit || !strings.Contains(cl.Reason, "--max-frame-size") {
		t.Fatalf("answer %T %+v; want close with code limit naming --max-frame-size", m, m)
	}
	wantLimitLogged(t, r, limitFrameSize)
	assertEcho(t, portFor(t, ms, echo))
}

func TestMappingsPerNodeLimit(t *testing.T) {
	leakCheck(t)
	e1, e2, e3 := startEcho(t), startEcho(t), startEcho(t)
	r := startRelay(t, relayOpts{Limits: Limits{MappingsPerNode: 2}})
	key := newKey(t)
	cfg := nodeConfig(r, []Expose{tcpExpose(e1), tcpExpose(e2), tcpExpose(e3)})
	cfg.Key = key
	err := runNode(t, cfg).wait(t, 5*time.Second)
	wantRefusal(t, err, mux.CodeLimit)
	if !strings.Contains(err.Error(), "--max-mappings-per-node") || !strings.Contains(err.Error(), e3) {
		t.Errorf("refusal %q does not name the limit and the expose", err)
	}
	wantLimitLogged(t, r, limitMappingsPerNode)
	ms := fileMappings(t, r.MapsPath)
	if len(ms) != 2 {
		t.Fatalf("relay holds %d mappings; want 2, the limit", len(ms))
	}
	// Releasing one makes room.
	cfg.Release = []PublicPort{{Network: "tcp", Port: ms[0].BlindPort}}
	cfg.Exposes = []Expose{tcpExpose(e3)}
	n := runNode(t, cfg)
	assertEcho(t, portFor(t, n.nextReady(t, 5*time.Second).Mappings, e3))
}

func TestTotalMappingsLimit(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{Limits: Limits{Mappings: 1}})
	keyA := newKey(t)
	a, ms := startNode(t, r, []Expose{tcpExpose(echo)}, keyA)
	port := portFor(t, ms, echo)

	b := runNode(t, nodeConfig(r, []Expose{tcpExpose(echo)}))
	wantLimitLogged(t, r, limitMappings)
	select {
	case c := <-b.ready:
		t.Fatalf("granted %+v beyond the limit", c.Mappings)
	default:
	}
	said := eventually(2*time.Second, func() bool { return strings.Contains(b.Logs.String(), "--max-mappings") })
	if !said || !b.running() {
		t.Fatalf("node B should say it is refused by --max-mappings and keep asking")
	}
	// A gives its port up; B gets one.
	a.Stop()
	cfg := nodeConfig(r, nil)
	cfg.Key, cfg.Release = keyA, []PublicPort{{Network: "tcp", Port: port}}
	if err := runNode(t, cfg).wait(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	assertEcho(t, portFor(t, b.nextReady(t, 5*time.Second).Mappings, echo))
}

// Beyond StreamsPerSession visitors in flight to one node, a visitor is
// refused at once and the node is told; once one leaves, visitors flow.
func TestStreamsPerSessionLimit(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{Limits: Limits{StreamsPerSession: 2}})
	n, ms := startNode(t, r, []Expose{tcpExpose(echo)}, nil)
	port := portFor(t, ms, echo)
	var held []net.Conn
	for i := range 2 {
		c := dialVisitor(t, port)
		fmt.Fprintf(c, "visitor %d\n", i)
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != fmt.Sprintf("visitor %d\n", i) {
			t.Fatalf("visitor %d: %q %v", i, line, err)
		}
		held = append(held, c)
	}
	// The one too many is reset at once: during its connect, or just after.
	if c, err := net.DialTimeout("tcp", localAddr(port), 2*time.Second); err == nil {
		defer c.Close()
		expectClosed(t, c, 2*time.Second)
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("visitor beyond the limit: %v; want a reset", err)
	}
	wantLimitLogged(t, r, limitStreamsPerSession)
	if !eventually(3*time.Second, func() bool { return strings.Contains(n.Logs.String(), "turning visitors away") }) {
		t.Error("the node was not told that visitors are turned away")
	}
	held[0].Close()
	if !eventually(5*time.Second, func() bool {
		_, err := exchange(port, []byte("again"))
		return err == nil
	}) {
		t.Fatal("no visitor got through after one left")
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, l := range []Limits{{SessionsPerAddress: -1}, {Mappings: -5}, {MaxFrameSize: 100}} {
		if err := l.validate(); err == nil || !strings.Contains(err.Error(), "--") {
			t.Errorf("%+v: err %v; want one naming the flag", l, err)
		}
	}
	if d := DefaultLimits(); d.StreamsPerSession < 1024 || d.validate() != nil {
		t.Errorf("defaults %+v: at least 1024 streams per node, and valid", d)
	}
}
