package tunnel

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
)

func registryServer(addr string, latency time.Duration) registry.Server {
	return registry.Server{Address: addr, Latency: latency}
}

// Without the token a probe still measures: hello to challenge.
func TestProbeWithoutToken(t *testing.T) {
	leakCheck(t)
	r := startRelay(t, relayOpts{})
	far := startDelayProxy(t, r.Addr, 20*time.Millisecond)
	servers := openServers(t)
	cfg := nodeConfig(r, nil)
	cfg.Token, cfg.Relays = nil, servers
	res := queryNode(t, cfg).Probe(t.Context(), far.Addr())
	if res.Err != nil || res.Name != "test-relay" || res.Pings != 1 || res.Latency < 40*time.Millisecond {
		t.Fatalf("probe: %+v", res)
	}
	if sv, _ := reloadServers(t, servers).Get(far.Addr()); sv.Latency != res.Latency || sv.Name != "test-relay" {
		t.Fatalf("recorded %+v", sv)
	}
}

// A relay that cannot be reached keeps what the registry knew of it.
func TestProbeUnreachable(t *testing.T) {
	leakCheck(t)
	servers := openServers(t)
	dead := localAddr(deadPort(t))
	servers.Upsert(registry.Server{Name: "gone", Address: dead, Latency: 3 * time.Millisecond})
	cfg := NodeConfig{Token: testToken, Relays: servers, DialTimeout: time.Second}
	results, err := queryNode(t, cfg).ProbeAll(t.Context())
	if err != nil || len(results) != 1 || results[0].Err == nil || results[0].Latency != 0 {
		t.Fatalf("ProbeAll: %+v, %v", results, err)
	}
	if sv, _ := servers.Get(dead); sv.Latency != 3*time.Millisecond {
		t.Fatalf("a failed probe changed the record to %+v", sv)
	}
}

// Listing asks the relay in a query session: a node sees its own mappings
// only, and its running session is not disturbed.
func TestListMappingsIsolatedAndHarmless(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	key := newKey(t)
	n, ms := startNode(t, r, []Expose{tcpExpose(echo)}, key)
	_, others := startNode(t, r, []Expose{tcpExpose(echo)}, nil)
	mine := portFor(t, ms, echo)

	cfg := nodeConfig(r, nil)
	cfg.Key, cfg.Name = key, "lister"
	got, err := queryNode(t, cfg).ListMappings(t.Context(), r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].BlindPort != mine || got[0].Local != echo || got[0].Type != "TCP" ||
		got[0].Address != "127.0.0.1" || got[0].ServerName != "test-relay" || got[0].Created.IsZero() ||
		got[0].NodeName != "node-"+mux.NodeID(key.Public().(ed25519.PublicKey))[:8] {
		t.Fatalf("listed %+v; want only port %d (the other node holds %d)", got, mine, portFor(t, others, echo))
	}
	time.Sleep(100 * time.Millisecond) // a replaced session would be closed by now
	if !n.running() || r.Logs.count("replaced") > 0 {
		t.Fatal("listing replaced the node's running session")
	}
	assertEcho(t, mine)

	cfg.Token = []byte("wrong")
	_, err = queryNode(t, cfg).ListMappings(t.Context(), r.Addr)
	var refused *mux.Error
	if !errors.As(err, &refused) || refused.Code != mux.CodeAuth {
		t.Fatalf("listing with a wrong token: %v", err)
	}
}

// A query session may not expose, and gets one exchange.
func TestQuerySessionLimits(t *testing.T) {
	leakCheck(t)
	r := startRelay(t, relayOpts{})
	q := queryNode(t, nodeConfig(r, nil))
	c, err := q.connect(t.Context(), r.Addr, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	c.ctrl.SetDeadline(time.Now().Add(5 * time.Second))
	c.ctrl.Send(&mux.Expose{ID: 1, Network: "tcp", Local: "127.0.0.1:22"})
	if m, err := c.ctrl.Recv(); err != nil || m.(*mux.Error).Code != mux.CodeBadRequest {
		t.Fatalf("expose in a query session: %#v, %v", m, err)
	}
	for i, want := range []mux.Type{mux.TypeExchange, mux.TypeError} {
		c.ctrl.Send(&mux.Exchange{})
		if m, err := c.ctrl.Recv(); err != nil || m.Type() != want {
			t.Fatalf("exchange %d: got %#v, %v; want %v", i+1, m, err, want)
		}
	}
	if len(r.Maps.List()) != 0 || r.Logs.count("granted") != 0 {
		t.Fatal("a query session got a port")
	}
}
