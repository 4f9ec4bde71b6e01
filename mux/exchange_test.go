package mux

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/p2prc/p2prc/iptable"
)

// exampleExchange is an exchange as a relay sends it: itself and a relay it
// heard of, its own entry and a node's, one with a key P2PRC added later.
func exampleExchange() *Exchange {
	return &Exchange{
		Relays: []RelayInfo{
			{Name: "relay-1", Address: "203.0.113.7:8700"},
			{Name: "relay-2", Address: "relay.example:8700", Fingerprint: "ab12"},
		},
		IPTable: []iptable.Entry{
			{Name: "relay-1", IPV4: "203.0.113.7", ServerPort: "8700", ProxyServer: true},
			{Name: "home", IPV4: "203.0.113.7", ServerPort: "30001", EscapeImplementation: iptable.EscapeImplementation,
				Extra: map[string]json.RawMessage{"Future": json.RawMessage(`{"a":[1,"\u003cb\u003e"]}`)}},
		},
	}
}

// What one P2PRC build writes in its table, keys this build does not know
// included, reaches the peer unchanged.
func TestExchangeKeepsUnknownKeys(t *testing.T) {
	in := frame(byte(TypeExchange), `{"relays":[],"ip_table":[{"IPV4":"198.51.100.1","ServerPort":"8088",`+
		`"GPU": {"model": "rtx", "mem":  24}, "serverport_udp": "x"}]}`)
	m, err := ReadFrame(bytes.NewReader(in), DefaultMaxFrameSize)
	if err != nil {
		t.Fatal(err)
	}
	e := m.(*Exchange).IPTable[0]
	if e.IPV4 != "198.51.100.1" || e.ServerPort != "8088" {
		t.Fatalf("known keys: %+v", e)
	}
	if got := string(e.Extra["GPU"]); got != `{"model":"rtx","mem":24}` {
		t.Errorf("GPU kept as %s", got)
	}
	if got := string(e.Extra["serverport_udp"]); got != `"x"` {
		t.Errorf("serverport_udp kept as %s", got)
	}
}

// A peer cannot make us merge more than the caps, however small its entries.
func TestExchangeCaps(t *testing.T) {
	many := func(n int, item string) string {
		return "[" + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + "]"
	}
	tests := []struct {
		name    string
		payload string
		ok      bool
	}{
		{"relays at the cap", `{"relays":` + many(MaxExchangeRelays, `{}`) + `}`, true},
		{"relays above the cap", `{"relays":` + many(MaxExchangeRelays+1, `{}`) + `}`, false},
		{"entries at the cap", `{"ip_table":` + many(MaxExchangeEntries, `{}`) + `}`, true},
		{"entries above the cap", `{"ip_table":` + many(MaxExchangeEntries+1, `{}`) + `}`, false},
		{"entry that is not an object", `{"ip_table":[1]}`, false},
	}
	for _, tt := range tests {
		_, err := ReadFrame(bytes.NewReader(frame(byte(TypeExchange), tt.payload)), DefaultMaxFrameSize)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrMalformed)) {
			t.Errorf("%s: err = %v", tt.name, err)
		}
	}
	list := fmt.Sprintf(`{"id":1,"mappings":%s}`, many(MaxListedMappings+1, `{}`))
	if _, err := ReadFrame(bytes.NewReader(frame(byte(TypeMappingList), list)), DefaultMaxFrameSize); !errors.Is(err, ErrMalformed) {
		t.Errorf("a mapping list above the cap: err = %v", err)
	}
}

// Greet learns the relay's name and a round trip without the token, and
// says it is only a query.
func TestGreet(t *testing.T) {
	a, b := pipe(t)
	got := make(chan *Hello, 1)
	go func() {
		c := NewConn(b, 0)
		m, _ := c.Recv()
		h, _ := m.(*Hello)
		got <- h
		c.Send(&Challenge{Version: Version, Relay: "relay-1", Nonce: make([]byte, nonceSize)})
	}()
	ch, rtt, err := NewConn(a, 0).Greet("prober", 0)
	if err != nil || ch.Relay != "relay-1" || rtt <= 0 {
		t.Fatalf("Greet: %+v, %v, %v", ch, rtt, err)
	}
	if h := <-got; h == nil || !h.Query || h.Name != "prober" || len(h.Identity) != 32 {
		t.Fatalf("the relay got hello %+v", h)
	}
}

// A query hello reaches the relay as a query peer.
func TestQueryHandshake(t *testing.T) {
	token := []byte("s3cret")
	n, r := handshake(t,
		NodeAuth{Name: "lister", Key: newKey(t), Token: token, Query: true},
		RelayAuth{Name: "relay-1", PublicHost: "203.0.113.7", Token: token})
	if n.err != nil || r.err != nil || !r.peer.Query {
		t.Fatalf("node: %v, relay: %v, peer %+v", n.err, r.err, r.peer)
	}
	_, r = handshake(t,
		NodeAuth{Name: "node", Key: newKey(t), Token: token},
		RelayAuth{Name: "relay-1", PublicHost: "203.0.113.7", Token: token})
	if r.err != nil || r.peer.Query {
		t.Fatalf("a plain hello made peer %+v (%v)", r.peer, r.err)
	}
}

func TestExchangeThroughConn(t *testing.T) {
	a, b := pipe(t)
	want := exampleExchange()
	go NewConn(a, 0).Send(want)
	got, err := NewConn(b, 0).Recv()
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v (%v), want %+v", got, err, want)
	}
}

// pipe returns two ends of an in-memory connection, closed at cleanup.
func pipe(t *testing.T) (net.Conn, net.Conn) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}
