package tunnel

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

// UDP through relay and node, as a visitor and the local service see it.

func udpExpose(local string) Expose { return Expose{Network: "udp", Local: local} }

// udpFlows is the number of live UDP flows a status shows, over all mappings.
func udpFlows(st Status) int64 {
	var n int64
	for _, nd := range st.Nodes {
		for _, m := range nd.Mappings {
			n += m.Traffic.Flows
		}
	}
	return n
}

// startUDPService answers each datagram to a fresh 127.0.0.1 port with what
// reply returns (nothing if nil). It stops at cleanup.
func startUDPService(t testing.TB, reply func(from netip.AddrPort, b []byte) []byte) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return serveUDP(t, c, reply)
}

func serveUDP(t testing.TB, c *net.UDPConn, reply func(from netip.AddrPort, b []byte) []byte) string {
	setUDPBuffers(c, 4<<20)
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, maxUDPPayload)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			if out := reply(from, buf[:n]); out != nil {
				c.WriteToUDPAddrPort(out, from)
			}
		}
	})
	t.Cleanup(func() { c.Close(); wg.Wait() })
	return c.LocalAddr().String()
}

// startUDPEcho sends every datagram back to its sender.
func startUDPEcho(t *testing.T) string {
	return startUDPService(t, func(_ netip.AddrPort, b []byte) []byte { return b })
}

// startUDPWho answers each datagram with the sender's address as the
// service sees it, then the datagram.
func startUDPWho(t *testing.T) string {
	return startUDPService(t, func(from netip.AddrPort, b []byte) []byte {
		return append([]byte(from.String()+"|"), b...)
	})
}

// udpVisitor is a visitor's socket, sending to a public port.
func udpVisitor(t *testing.T, port int) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(localAddr(port))))
	if err != nil {
		t.Fatal(err)
	}
	setUDPBuffers(c, 1<<20)
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends b and returns the first datagram back, trying up to three
// times: UDP may lose a datagram, but what arrives must be whole.
func roundTrip(c *net.UDPConn, b []byte) ([]byte, error) {
	buf := make([]byte, maxUDPPayload)
	var err error
	for range 3 {
		if _, err = c.Write(b); err != nil {
			continue
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		var n int
		if n, err = c.Read(buf); err == nil {
			return buf[:n], nil
		}
	}
	return nil, err
}

// expectSilence checks that nothing comes back on c within d.
func expectSilence(t *testing.T, c *net.UDPConn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, maxUDPPayload))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, err %v; want silence", n, err)
	}
}

// framings runs body with each way of carrying flows.
func framings(t *testing.T, body func(t *testing.T, perFlow bool)) {
	for _, perFlow := range []bool{false, true} {
		name := "stream-per-mapping"
		if perFlow {
			name = "stream-per-flow"
		}
		t.Run(name, func(t *testing.T) { body(t, perFlow) })
	}
}

func TestUDPDatagramsEchoWhole(t *testing.T) {
	framings(t, func(t *testing.T, perFlow bool) {
		leakCheck(t)
		echo := startUDPEcho(t)
		r := startRelay(t, relayOpts{UDPStreamPerFlow: perFlow})
		_, ms := startNode(t, r, []Expose{udpExpose(echo)}, nil)
		c := udpVisitor(t, portOf(t, ms, "UDP", echo))
		for _, size := range []int{1, 1400, 8000, 60000} {
			want := payload(uint64(size), size)
			got, err := roundTrip(c, want)
			if err != nil {
				t.Fatalf("%d-byte datagram: %v", size, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%d-byte datagram came back as %d bytes (equal: %v)", size, len(got), bytes.Equal(got, want))
			}
		}
	})
}

// Three visitors at once each get their own replies only, and the service
// sees each from its own address.
func TestUDPThreeVisitorsStayApart(t *testing.T) {
	leakCheck(t)
	who := startUDPWho(t)
	r := startRelay(t, relayOpts{})
	_, ms := startNode(t, r, []Expose{udpExpose(who)}, nil)
	port := portOf(t, ms, "UDP", who)

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		seen  = map[string]int{} // source address at the service -> visitor
		conns [3]*net.UDPConn
	)
	for i := range conns {
		conns[i] = udpVisitor(t, port)
	}
	for i, c := range conns {
		wg.Go(func() {
			for j := range 20 {
				msg := fmt.Appendf(nil, "visitor %d datagram %d", i, j)
				got, err := roundTrip(c, msg)
				if err != nil {
					t.Errorf("visitor %d: %v", i, err)
					return
				}
				src, body, _ := bytes.Cut(got, []byte("|"))
				if !bytes.Equal(body, msg) {
					t.Errorf("visitor %d got %q, want its own %q", i, body, msg)
					return
				}
				mu.Lock()
				if other, ok := seen[string(src)]; ok && other != i {
					t.Errorf("visitors %d and %d reach the service from the same address %s", i, other, src)
				}
				seen[string(src)] = i
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 3 {
		t.Fatalf("the service saw %d source addresses for 3 visitors: %v", len(seen), seen)
	}
}

// An idle flow is freed at the relay and the node, whichever end's timer
// runs out first; the visitor's next datagram starts a new flow.
func TestUDPIdleExpiryFreesBothEnds(t *testing.T) {
	const short, long = 200 * time.Millisecond, time.Minute
	for _, tc := range []struct {
		name                string
		relayIdle, nodeIdle time.Duration
	}{
		{"relay expires", short, long},
		{"node expires", long, short},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakCheck(t)
			who := startUDPWho(t)
			r := startRelay(t, relayOpts{UDPIdle: tc.relayIdle})
			cfg := nodeConfig(r, []Expose{udpExpose(who)})
			cfg.UDPIdle = tc.nodeIdle
			n := runNode(t, cfg)
			ms := n.nextReady(t, 5*time.Second).Mappings
			c := udpVisitor(t, portOf(t, ms, "UDP", who))

			got, err := roundTrip(c, []byte("one"))
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := bytes.Cut(got, []byte("|"))
			if udpFlows(r.Relay.Status()) != 1 || udpFlows(n.Node.Status()) != 1 {
				t.Fatalf("flows: relay %d, node %d; want 1 and 1", udpFlows(r.Relay.Status()), udpFlows(n.Node.Status()))
			}
			if !eventually(5*time.Second, func() bool { return udpFlows(r.Relay.Status()) == 0 && udpFlows(n.Node.Status()) == 0 }) {
				t.Fatalf("flows after idling: relay %d, node %d; want 0 and 0", udpFlows(r.Relay.Status()), udpFlows(n.Node.Status()))
			}
			got, err = roundTrip(c, []byte("two"))
			if err != nil {
				t.Fatal(err)
			}
			second, _, _ := bytes.Cut(got, []byte("|"))
			if bytes.Equal(first, second) {
				t.Errorf("after expiry the service still sees the visitor from %s: the node kept the old socket", first)
			}
		})
	}
}

// A flood of new source addresses cannot push the relay or the node past the
// flow cap, nor evict a visitor that is still active; once the flood has
// gone quiet, new visitors replace its flows.
func TestUDPFlowCapHoldsUnderFlood(t *testing.T) {
	leakCheck(t)
	const maxFlows = 8
	echo := startUDPEcho(t)
	r := startRelay(t, relayOpts{UDPMaxFlows: maxFlows, UDPIdle: 4 * time.Second}) // quiet for 1 s: evictable
	n, ms := startNode(t, r, []Expose{udpExpose(echo)}, nil)
	port := portOf(t, ms, "UDP", echo)

	// The regular visitor keeps talking throughout.
	regular := udpVisitor(t, port)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var regularErr error
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			msg := fmt.Appendf(nil, "regular %d", i)
			if got, err := roundTrip(regular, msg); err != nil || !bytes.Equal(got, msg) {
				regularErr = fmt.Errorf("datagram %d: got %q, %v", i, got, err)
				return
			}
		}
	})
	if _, err := roundTrip(regular, []byte("hello")); err != nil {
		t.Fatal(err)
	}

	// The flood: 200 sources, three datagrams each, bounded.
	check := func() {
		t.Helper()
		if f := udpFlows(r.Relay.Status()); f > maxFlows {
			t.Fatalf("relay holds %d flows, cap %d", f, maxFlows)
		}
		if f := udpFlows(n.Node.Status()); f > maxFlows {
			t.Fatalf("node holds %d flows, cap %d", f, maxFlows)
		}
	}
	var flood []*net.UDPConn
	for range 200 {
		flood = append(flood, udpVisitor(t, port))
	}
	for round := range 3 {
		for _, c := range flood {
			c.Write(fmt.Appendf(nil, "flood %d", round))
		}
		check()
	}
	time.Sleep(100 * time.Millisecond)
	check()
	if udpFlows(r.Relay.Status()) != maxFlows {
		t.Errorf("relay holds %d flows after the flood, want the cap, %d", udpFlows(r.Relay.Status()), maxFlows)
	}

	// Quiet for over a second, the flood's flows give way to new visitors.
	time.Sleep(1200 * time.Millisecond)
	if !eventually(3*time.Second, func() bool { return r.Logs.count("UDP datagrams dropped") > 0 }) {
		t.Errorf("the relay did not report the dropped datagrams")
	}
	for i := range 3 {
		c := udpVisitor(t, port)
		msg := fmt.Appendf(nil, "late visitor %d", i)
		if got, err := roundTrip(c, msg); err != nil || !bytes.Equal(got, msg) {
			t.Errorf("late visitor %d: got %q, %v; want its echo", i, got, err)
		}
		check()
	}
	close(stop)
	wg.Wait()
	if regularErr != nil {
		t.Fatalf("the regular visitor suffered from the flood: %v", regularErr)
	}
}

// The node holds to its own cap whatever the relay allows: visitors beyond
// it hear silence, the others carry on.
func TestUDPNodeFlowCap(t *testing.T) {
	leakCheck(t)
	echo := startUDPEcho(t)
	r := startRelay(t, relayOpts{})
	cfg := nodeConfig(r, []Expose{udpExpose(echo)})
	cfg.UDPMaxFlows = 2
	n := runNode(t, cfg)
	port := portOf(t, n.nextReady(t, 5*time.Second).Mappings, "UDP", echo)
	var cs []*net.UDPConn
	for i := range 2 {
		cs = append(cs, udpVisitor(t, port))
		if _, err := roundTrip(cs[i], []byte("hi")); err != nil {
			t.Fatalf("visitor %d under the cap: %v", i, err)
		}
	}
	extra := udpVisitor(t, port)
	extra.Write([]byte("let me in"))
	expectSilence(t, extra, 300*time.Millisecond)
	if f := udpFlows(n.Node.Status()); f != 2 {
		t.Errorf("node holds %d flows, cap 2", f)
	}
	for i, c := range cs {
		if _, err := roundTrip(c, []byte("still here")); err != nil {
			t.Errorf("visitor %d after the refusal: %v", i, err)
		}
	}
}

// A local service that is down costs the visitor silence and nothing else;
// when the service comes back, the same visitor is answered.
func TestUDPLocalServiceDown(t *testing.T) {
	leakCheck(t)
	down := net.JoinHostPort("127.0.0.1", fmt.Sprint(deadUDPPort(t)))
	echo := startUDPEcho(t)
	tcpEcho := startEcho(t)
	r := startRelay(t, relayOpts{})
	_, ms := startNode(t, r, []Expose{udpExpose(down), udpExpose(echo), tcpExpose(tcpEcho)}, nil)

	c := udpVisitor(t, portOf(t, ms, "UDP", down))
	for range 5 {
		c.Write([]byte("anyone?"))
	}
	expectSilence(t, c, 300*time.Millisecond)

	if _, err := roundTrip(udpVisitor(t, portOf(t, ms, "UDP", echo)), []byte("other")); err != nil {
		t.Fatalf("another UDP mapping: %v", err)
	}
	assertEcho(t, portFor(t, ms, tcpEcho))

	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(down)))
	if err != nil {
		t.Fatal(err)
	}
	serveUDP(t, pc, func(_ netip.AddrPort, b []byte) []byte { return b })
	if got, err := roundTrip(c, []byte("back?")); err != nil || string(got) != "back?" {
		t.Fatalf("after the service came back: %q, %v", got, err)
	}
}

// deadUDPPort returns a UDP port on 127.0.0.1 that nothing listens on.
func deadUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// A TCP and a UDP mapping may ask for the same port number; both are
// granted, and each carries its own traffic.
func TestTCPAndUDPShareAPortNumber(t *testing.T) {
	leakCheck(t)
	r := startRelay(t, relayOpts{})
	want := r.Ports.Lo + 7
	tcpEcho, udpEcho := startEcho(t), startUDPEcho(t)
	tcp, udp := tcpExpose(tcpEcho), udpExpose(udpEcho)
	tcp.RemotePort, udp.RemotePort = want, want
	_, ms := startNode(t, r, []Expose{tcp, udp}, nil)
	if p, q := portFor(t, ms, tcpEcho), portOf(t, ms, "UDP", udpEcho); p != want || q != want {
		t.Fatalf("granted tcp %d and udp %d, want both %d", p, q, want)
	}
	assertEcho(t, want)
	if got, err := roundTrip(udpVisitor(t, want), []byte("udp")); err != nil || string(got) != "udp" {
		t.Fatalf("udp through the shared port number: %q, %v", got, err)
	}
	if n := len(fileMappings(t, r.MapsPath)); n != 2 {
		t.Errorf("the relay's file holds %d mappings, want 2", n)
	}
}

// Datagrams to a UDP port whose node is away are dropped; when the node is
// back (same identity), the same port carries them again.
func TestUDPPortSurvivesReconnect(t *testing.T) {
	leakCheck(t)
	echo := startUDPEcho(t)
	r := startRelay(t, relayOpts{})
	key := newKey(t)
	n, ms := startNode(t, r, []Expose{udpExpose(echo)}, key)
	port := portOf(t, ms, "UDP", echo)
	c := udpVisitor(t, port)
	if _, err := roundTrip(c, []byte("before")); err != nil {
		t.Fatal(err)
	}
	n.Stop()
	c.Write([]byte("nobody home"))
	expectSilence(t, c, 200*time.Millisecond)

	_, ms = startNode(t, r, []Expose{udpExpose(echo)}, key)
	if p := portOf(t, ms, "UDP", echo); p != port {
		t.Fatalf("got port %d back, want %d", p, port)
	}
	if got, err := roundTrip(c, []byte("after")); err != nil || string(got) != "after" {
		t.Fatalf("after the reconnect: %q, %v", got, err)
	}
}

// A burst of datagrams of mixed sizes comes back whole: none merged, cut or
// changed on the way through, in either direction. (A busy machine may drop
// some: UDP's right, so the test asks only that most come back.)
func TestUDPBurstComesBackWhole(t *testing.T) {
	leakCheck(t)
	echo := startUDPEcho(t)
	r := startRelay(t, relayOpts{})
	_, ms := startNode(t, r, []Expose{udpExpose(echo)}, nil)
	c := udpVisitor(t, portOf(t, ms, "UDP", echo))
	if _, err := roundTrip(c, []byte("open the flow")); err != nil {
		t.Fatal(err)
	}

	const n = 200
	sizes := []int{1400, 1400, 1400, 700, 1400, 1, 8000, 1400, 1400, 60000}
	sent := map[string]int{} // a multiset: one-byte datagrams repeat
	for i := range n {
		b := payload(uint64(i), sizes[i%len(sizes)])
		sent[string(b)]++
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, maxUDPPayload)
	got := 0
	for ; got < n; got++ {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		m, err := c.Read(buf)
		if err != nil {
			break
		}
		if sent[string(buf[:m])] == 0 {
			t.Fatalf("echo %d: %d bytes that were never sent as one datagram", got, m)
		}
		sent[string(buf[:m])]--
	}
	if got < n/2 {
		t.Fatalf("%d of %d datagrams came back", got, n)
	}
}

// A relay restarted on the same mapping file binds its UDP ports again: an
// absent node's port stays reserved, and a reconnecting node gets its port
// back and carries datagrams again.
func TestRelayRestartKeepsUDPPorts(t *testing.T) {
	leakCheck(t)
	echo, echoAway := startUDPEcho(t), startUDPEcho(t)
	r := startRelay(t, relayOpts{})
	n, ms := startNode(t, r, []Expose{udpExpose(echo)}, nil)
	port := portOf(t, ms, "UDP", echo)
	away, ms := startNode(t, r, []Expose{udpExpose(echoAway)}, nil)
	awayPort := portOf(t, ms, "UDP", echoAway)
	away.Stop()

	r.Stop()
	startRelay(t, relayOpts{Ports: r.Ports, Addr: r.Addr, MapsPath: r.MapsPath})
	if got := portOf(t, n.nextReady(t, 5*time.Second).Mappings, "UDP", echo); got != port {
		t.Fatalf("after the relay restart the node got port %d, had %d", got, port)
	}
	if got, err := roundTrip(udpVisitor(t, port), []byte("again")); err != nil || string(got) != "again" {
		t.Fatalf("after the restart: %q, %v", got, err)
	}
	if !eventually(2*time.Second, func() bool { return udpPortHeld(awayPort) }) {
		t.Fatalf("the restarted relay did not keep UDP port %d bound for its absent node", awayPort)
	}
}

// udpPortHeld reports whether a UDP socket holds port on 127.0.0.1.
func udpPortHeld(port int) bool {
	c, err := net.ListenPacket("udp", localAddr(port))
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// A UDP mapping's traffic shows in Status at both ends, as a TCP one's
// does: the bytes each way while they flow, and the live flows.
func TestUDPTrafficCounted(t *testing.T) {
	leakCheck(t)
	echo := startUDPEcho(t)
	r := startRelay(t, relayOpts{UDPIdle: 300 * time.Millisecond})
	cfg := nodeConfig(r, []Expose{udpExpose(echo)})
	cfg.UDPIdle = time.Minute
	n := runNode(t, cfg)
	port := portOf(t, n.nextReady(t, 5*time.Second).Mappings, "UDP", echo)
	c := udpVisitor(t, port)
	for range 3 {
		if _, err := roundTrip(c, payload(7, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	want := TrafficStats{BytesIn: 3000, BytesOut: 3000, Flows: 1}
	var gotR, gotN TrafficStats
	if !eventually(5*time.Second, func() bool {
		gotR, gotN = trafficOf(t, r.Relay.Status(), port), trafficOf(t, n.Node.Status(), port)
		return gotR == want && gotN == want
	}) {
		t.Fatalf("UDP traffic: relay %+v, node %+v; want %+v at both", gotR, gotN, want)
	}
	// The relay's idle timer ends the flow at both ends.
	want.Flows = 0
	if !eventually(5*time.Second, func() bool {
		gotR, gotN = trafficOf(t, r.Relay.Status(), port), trafficOf(t, n.Node.Status(), port)
		return gotR == want && gotN == want
	}) {
		t.Fatalf("after the flow expired: relay %+v, node %+v; want %+v at both", gotR, gotN, want)
	}
}
