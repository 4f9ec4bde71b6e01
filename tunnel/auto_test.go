package tunnel

import (
	"strings"
	"testing"
	"time"

	"github.com/p2prc/p2prc/mux"
)

// queryNode is a node that only probes and lists, recording in cfg.Relays.
func queryNode(t *testing.T, cfg NodeConfig) *Node {
	t.Helper()
	n, err := NewQueryNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// --relay auto takes the fastest relay it can reach, and the next one when
// that one dies.
func TestAutoChoosesFasterRelayAndFailsOver(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	// Timeouts with room to spare: connections go through proxies, one of
	// them slow, on a machine that may be busy.
	patient := relayOpts{PeerTimeout: 10 * time.Second}
	rA, rB := startRelay(t, patient), startRelay(t, patient)
	pA, pB := startDelayProxy(t, rA.Addr, 0), startDelayProxy(t, rB.Addr, 0)
	// The slow path is the one whose address sorts first, so that a choice
	// by address rather than by latency would pick it.
	slow, fast, fastRelay := pA, pB, rB
	if pB.Addr() < pA.Addr() {
		slow, fast, fastRelay = pB, pA, rA
	}
	slow.setDelay(20 * time.Millisecond)

	servers := openServers(t)
	base := nodeConfig(rA, nil)
	base.Relays, base.HandshakeTimeout = servers, 5*time.Second
	q := queryNode(t, base)
	for _, p := range []*delayProxy{slow, fast} {
		if res := q.Probe(t.Context(), p.Addr()); res.Err != nil || res.Pings != latencyPings {
			t.Fatalf("probe %s: %+v", p.Addr(), res)
		}
	}
	list := servers.List()
	if len(list) != 2 || list[0].Address != fast.Addr() || list[1].Latency < 40*time.Millisecond {
		t.Fatalf("registry after probing, fastest first: %+v; fast is %s", list, fast.Addr())
	}

	table := openTable(t)
	cfg := nodeConfig(rA, []Expose{tcpExpose(echo)})
	cfg.Relay, cfg.Relays, cfg.IPTable, cfg.Name = AutoRelay, servers, table, "home"
	cfg.HandshakeTimeout, cfg.PeerTimeout = 5*time.Second, 10*time.Second
	n := runNode(t, cfg)
	c := n.nextReady(t, 10*time.Second)
	if c.Relay != fast.Addr() {
		t.Fatalf("auto chose %s; the fast relay is %s, the slow %s", c.Relay, fast.Addr(), slow.Addr())
	}
	assertEcho(t, portFor(t, c.Mappings, echo))

	fastRelay.Stop()
	c = n.nextReady(t, 15*time.Second)
	if c.Relay != slow.Addr() {
		t.Fatalf("after the fast relay died, auto moved to %s; want %s", c.Relay, slow.Addr())
	}
	port := portFor(t, c.Mappings, echo)
	assertEcho(t, port)

	assertOneOwnEntry(t, table, port) // the node's entry moved with it
}

// A relay that refuses the node (another token) is skipped; when all do,
// the node gives up with the refusal.
func TestAutoSkipsRefusingRelays(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	other := startRelay(t, relayOpts{Token: []byte("another-network")})
	ours := startRelay(t, relayOpts{})
	servers := openServers(t)
	// The refusing relay looks faster.
	servers.Upsert(registryServer(other.Addr, time.Microsecond))
	servers.Upsert(registryServer(ours.Addr, time.Second))

	cfg := nodeConfig(ours, []Expose{tcpExpose(echo)})
	cfg.Relay, cfg.Relays = AutoRelay, servers
	n := runNode(t, cfg)
	if c := n.nextReady(t, 10*time.Second); c.Relay != ours.Addr {
		t.Fatalf("connected to %s, want %s", c.Relay, ours.Addr)
	}
	n.Stop()

	ours.Stop()
	lonely := openServers(t)
	lonely.Upsert(registryServer(other.Addr, time.Microsecond))
	cfg.Relays = lonely
	wantRefusal(t, runNode(t, cfg).wait(t, 10*time.Second), mux.CodeAuth)
}

func TestAutoNeedsAMeasuredRelay(t *testing.T) {
	servers := openServers(t)
	servers.Upsert(registryServer("198.51.100.9:8700", 0)) // heard of, never measured
	cfg := NodeConfig{Relay: AutoRelay, Relays: servers, Exposes: []Expose{tcpExpose("127.0.0.1:1")}, Token: testToken, Key: newKey(t)}
	if _, err := NewNode(cfg); err == nil || !strings.Contains(err.Error(), "relays probe") {
		t.Fatalf("NewNode: %v; want advice to probe", err)
	}
}
