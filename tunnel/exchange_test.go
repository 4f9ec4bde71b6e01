package tunnel

import (
	"bytes"
	"encoding/json"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2prc/p2prc/iptable"
	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/registry"
)

// What relay and node learn from each other on connecting, as their files
// show it.

func openServers(t *testing.T) *registry.Servers {
	t.Helper()
	s, err := registry.OpenServers(filepath.Join(t.TempDir(), registry.ServerFileName))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openTable returns an IP table file holding entries.
func openTable(t *testing.T, entries ...iptable.Entry) *iptable.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), iptable.FileName)
	if len(entries) > 0 {
		if err := (&iptable.Table{Entries: entries}).Save(path); err != nil {
			t.Fatal(err)
		}
	}
	f, err := iptable.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// readTable reads the table afresh, as `p2prc iptable` would.
func readTable(t *testing.T, f *iptable.File) []iptable.Entry {
	t.Helper()
	tb, err := iptable.Load(f.Path())
	if err != nil {
		t.Fatal(err)
	}
	return tb.Entries
}

// reloadServers reads the registry afresh, as `p2prc relays` would.
func reloadServers(t *testing.T, s *registry.Servers) *registry.Servers {
	t.Helper()
	again, err := registry.OpenServers(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	return again
}

// compact is a kept JSON value without its spacing.
func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	json.Compact(&b, raw)
	return b.String()
}

func findEntry(entries []iptable.Entry, name string) (iptable.Entry, bool) {
	for _, e := range entries {
		if e.Name == name {
			return e, true
		}
	}
	return iptable.Entry{}, false
}

func TestRelayAndNodeExchangeWhatTheyKnow(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)

	relayServers := openServers(t)
	relayServers.Upsert(registry.Server{Name: "relay-x", Address: "198.51.100.9:8700", Latency: 7 * time.Millisecond})
	gpu := json.RawMessage(`{"model":"rtx","mem":24}`)
	relayTable := openTable(t, iptable.Entry{Name: "peer", IPV4: "198.51.100.20", ServerPort: "8088",
		Extra: map[string]json.RawMessage{"GPU": gpu}})
	r := startRelay(t, relayOpts{Relays: relayServers, IPTable: relayTable})

	nodeServers := openServers(t)
	nodeServers.Upsert(registry.Server{Name: "relay-y", Address: "198.51.100.10:8700"})
	nodeTable := openTable(t, iptable.Entry{Name: "other", IPV4: "198.51.100.30", ServerPort: "8088"})
	cfg := nodeConfig(r, []Expose{tcpExpose(echo)})
	cfg.Name, cfg.Relays, cfg.IPTable = "home", nodeServers, nodeTable
	n := runNode(t, cfg)
	c := n.nextReady(t, 5*time.Second)
	port := portFor(t, c.Mappings, echo)

	// The node: the relay it talked to, measured; the relay the relay knew,
	// unmeasured (the relay's latency to it says nothing of ours).
	ns := reloadServers(t, nodeServers)
	if sv, ok := ns.Get(r.Addr); !ok || sv.Name != "test-relay" || sv.Latency <= 0 || sv.LastSeen.IsZero() {
		t.Errorf("node's registry has %+v for the relay it used", sv)
	}
	if sv, ok := ns.Get("198.51.100.9:8700"); !ok || sv.Name != "relay-x" || sv.Latency != 0 {
		t.Errorf("node's registry has %+v for the relay it learnt of", sv)
	}
	// The node's table: its own entry, the relay's, and what the relay knew.
	entries := readTable(t, nodeTable)
	own, ok := findEntry(entries, "home")
	if !ok || own.IPV4 != "127.0.0.1" || own.ServerPort != strconv.Itoa(port) || own.NAT ||
		own.EscapeImplementation != iptable.EscapeImplementation || own.ProxyServer {
		t.Errorf("node's own entry: %+v (granted port %d)", own, port)
	}
	_, relayPort, _ := net.SplitHostPort(r.Addr)
	if e, ok := findEntry(entries, "test-relay"); !ok || !e.ProxyServer || e.IPV4 != "127.0.0.1" || e.ServerPort != relayPort {
		t.Errorf("node's table has %+v for the relay", e)
	}
	if e, ok := findEntry(entries, "peer"); !ok || compact(e.Extra["GPU"]) != string(gpu) {
		t.Errorf("node's table has %+v for the relay's peer; its GPU key should be kept", e)
	}

	// The relay: itself, the node's relay; the node's own entry and peer.
	rs := reloadServers(t, relayServers)
	if _, ok := rs.Get("198.51.100.10:8700"); !ok {
		t.Errorf("relay's registry lacks the relay the node knew: %+v", rs.List())
	}
	if sv, ok := rs.Get(r.Addr); !ok || sv.Name != "test-relay" {
		t.Errorf("relay does not list itself: %+v", rs.List())
	}
	entries = readTable(t, relayTable)
	if e, ok := findEntry(entries, "home"); !ok || e.ServerPort != strconv.Itoa(port) || e.EscapeImplementation != iptable.EscapeImplementation {
		t.Errorf("relay's table has %+v for the node", e)
	}
	if _, ok := findEntry(entries, "other"); !ok {
		t.Errorf("relay's table lacks the node's peer: %+v", entries)
	}
	assertEcho(t, port)
}

// The relay's latency is measured over the control protocol and in the
// registry before the node says it is ready.
func TestLatencyMeasuredAndStoredBeforeReady(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r := startRelay(t, relayOpts{})
	const oneWay = 25 * time.Millisecond
	far := startDelayProxy(t, r.Addr, oneWay)

	servers := openServers(t)
	cfg := nodeConfig(r, []Expose{tcpExpose(echo)})
	cfg.Relay, cfg.Relays = far.Addr(), servers
	seen := make(chan registry.Server, 1)
	cfg.OnReady = func(c Connected) {
		sv, _ := reloadServers(t, servers).Get(far.Addr())
		seen <- sv
	}
	n := runNode(t, cfg)
	c := n.nextReady(t, 10*time.Second)
	sv := <-seen
	if sv.Latency < 2*oneWay {
		t.Fatalf("registry held latency %v when the node was ready; the path adds %v", sv.Latency, 2*oneWay)
	}
	if c.Latency != sv.Latency {
		t.Errorf("node reported latency %v, stored %v", c.Latency, sv.Latency)
	}
	if sv.Name != "test-relay" || sv.LastSeen.IsZero() {
		t.Errorf("stored %+v", sv)
	}
}

// A node keeps one entry for itself: when it comes back through another
// relay, even as a new process, its old entry goes.
func TestOwnEntryFollowsTheNode(t *testing.T) {
	leakCheck(t)
	echo := startEcho(t)
	r1 := startRelay(t, relayOpts{})
	table := openTable(t)
	maps, err := registry.OpenMappings(filepath.Join(t.TempDir(), registry.MappingFileName))
	if err != nil {
		t.Fatal(err)
	}
	cfg := nodeConfig(r1, []Expose{tcpExpose(echo)})
	cfg.Name, cfg.IPTable, cfg.Mappings, cfg.Key = "home", table, maps, newKey(t)
	n := runNode(t, cfg)
	n.nextReady(t, 5*time.Second)
	n.Stop()
	r1.Stop()

	r2 := startRelay(t, relayOpts{})
	cfg.Relay = r2.Addr
	n2 := runNode(t, cfg)
	port := portFor(t, n2.nextReady(t, 5*time.Second).Mappings, echo)
	assertOneOwnEntry(t, table, port)
}

// assertOneOwnEntry checks that the table holds one entry of a relayed node,
// with port.
func assertOneOwnEntry(t *testing.T, table *iptable.File, port int) {
	t.Helper()
	var own []iptable.Entry
	for _, e := range readTable(t, table) {
		if e.EscapeImplementation == iptable.EscapeImplementation {
			own = append(own, e)
		}
	}
	if len(own) != 1 || own[0].ServerPort != strconv.Itoa(port) {
		t.Fatalf("after the node moved the table holds %+v; want one entry with port %d", own, port)
	}
}

// Writing our entry over P2PRC's entry for the same machine keeps what
// P2PRC put there, and an entry already as it should be is not rewritten.
func TestUpsertKeeping(t *testing.T) {
	tab := &iptable.Table{Entries: []iptable.Entry{
		{Name: "old-name", IPV4: "203.0.113.7", ServerPort: "30001", PublicKey: "ssh-ed25519 AAAA", MachineUsername: "pi",
			Extra: map[string]json.RawMessage{"GPU": json.RawMessage(`"rtx"`)}},
	}}
	e := iptable.RelayedEntry("home", "203.0.113.7", 30001)
	if !upsertKeeping(tab, e) {
		t.Fatal("a changed entry was reported unchanged")
	}
	got := tab.Entries[0]
	if len(tab.Entries) != 1 || got.Name != "home" || got.EscapeImplementation != iptable.EscapeImplementation ||
		got.PublicKey != "ssh-ed25519 AAAA" || got.MachineUsername != "pi" || string(got.Extra["GPU"]) != `"rtx"` {
		t.Fatalf("after the upsert: %+v", tab.Entries)
	}
	if upsertKeeping(tab, e) {
		t.Fatal("an entry already in place was reported changed (the file would be rewritten)")
	}
	if !upsertKeeping(tab, iptable.RelayedEntry("home", "203.0.113.7", 30002)) || len(tab.Entries) != 2 {
		t.Fatalf("a new port is a new entry: %+v", tab.Entries)
	}
}

// A table too big for one control frame is cut to fit, own entry first,
// rather than sent whole and the session closed for it (again at every
// reconnect). The frame cap is made small here so the test stays fast.
func TestHugeTableIsCutToFitAFrame(t *testing.T) {
	const limit = 64 << 10
	big := strings.Repeat("x", 4<<10)
	x := &mux.Exchange{IPTable: []iptable.Entry{iptable.RelayedEntry("home", "203.0.113.7", 30001)}}
	for i := range 24 { // 24 entries of 4 KiB: over the cap
		x.IPTable = append(x.IPTable, iptable.Entry{Name: "n", IPV4: "198.51.100.1", ServerPort: strconv.Itoa(1000 + i), CustomInformation: big})
	}
	for range 200 {
		x.Relays = append(x.Relays, mux.RelayInfo{Name: "r", Address: "relay.example:8700"})
	}
	fitFrame(x, limit)
	frame, err := mux.AppendFrame(nil, x)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mux.ReadFrame(bytes.NewReader(frame), limit); err != nil {
		t.Fatalf("the peer cannot read the exchange: %v", err)
	}
	if len(x.IPTable) < 5 || x.IPTable[0].Name != "home" || len(x.Relays) != 200 {
		t.Fatalf("sent %d entries, the first %q, and %d relays; want a good part of the 25, ours first, and every relay",
			len(x.IPTable), x.IPTable[0].Name, len(x.Relays))
	}
}

// --relay auto uses only measured relays this machine vouches for.
func TestAutoSkipsRelaysOnlyAPeerVouchesFor(t *testing.T) {
	relays := openServers(t)
	relays.Merge([]registry.Server{{Address: "203.0.113.1:8700"}})
	relays.Upsert(registry.Server{Address: "203.0.113.1:8700", Latency: time.Millisecond}) // measured by greeting
	relays.Upsert(registry.Server{Address: "203.0.113.2:8700", Latency: 5 * time.Millisecond})
	got := autoCandidates(relays)
	if len(got) != 1 || got[0].Address != "203.0.113.2:8700" {
		t.Fatalf("auto candidates %+v; want only the relay added here", got)
	}
}
