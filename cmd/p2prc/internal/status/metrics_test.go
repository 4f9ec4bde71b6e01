package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/p2prc/p2prc/tunnel"
)

// What Prometheus scrapes from a relay and a node, and what /api/status
// says, while a visitor's transfer runs and after it.

// transferStep sends chunk through c and reads its echo back.
func transferStep(t *testing.T, c net.Conn, chunk []byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { _, err := c.Write(chunk); errc <- err }()
	back := make([]byte, len(chunk))
	if _, err := io.ReadFull(c, back); err != nil || !bytes.Equal(back, chunk) {
		t.Fatalf("echo through the relay: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// checkTraffic scrapes both /metrics pages until they report the given
// bytes each way and open connections for port, or fails.
func checkTraffic(t *testing.T, port int, bytes uint64, open int, sides ...served) {
	t.Helper()
	l := fmt.Sprintf(`port="%d"`, port)
	for _, s := range sides {
		var page string
		deadline := time.Now().Add(5 * time.Second)
		for {
			page = get(t, s.url+"/metrics")
			in := sample(t, page, "p2prc_mapping_bytes_total", l, `direction="in"`)
			out := sample(t, page, "p2prc_mapping_bytes_total", l, `direction="out"`)
			conns := sample(t, page, "p2prc_visitor_connections", l)
			if in == float64(bytes) && out == float64(bytes) && conns == float64(open) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: bytes in %v, out %v, connections %v; want %d, %d, %d", s.url, in, out, conns, bytes, bytes, open)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestMetricsMoveWithTraffic(t *testing.T) {
	echo := startEcho(t)
	relayAddr, relay := startRelay(t)
	port, node := startNode(t, relayAddr, nodeOpts{name: "metered", local: echo})

	c := dialVisitor(t, port)

	// Step by step, with the visitor connected all along: the counters
	// show each chunk while the transfer is still going.
	const chunk = 256 << 10
	for i := range 3 {
		transferStep(t, c, bytes.Repeat([]byte{byte('a' + i)}, chunk))
		checkTraffic(t, port, uint64((i+1)*chunk), 1, relay, node)
	}
	last := bytes.Repeat([]byte{'z'}, 12345)
	transferStep(t, c, last)
	c.CloseWrite()
	io.Copy(io.Discard, c)
	c.Close()
	total := uint64(3*chunk + len(last))
	checkTraffic(t, port, total, 0, relay, node)

	for _, s := range []served{relay, node} {
		page := get(t, s.url+"/metrics")
		l := fmt.Sprintf(`port="%d"`, port)
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"p2prc_sessions", nil, 1},
			{"p2prc_sessions_opened_total", nil, 1},
			{"p2prc_grants_total", []string{`type="tcp"`}, 1},
			{"p2prc_mappings", []string{`type="tcp"`, `state="connected"`}, 1},
			{"p2prc_visitor_connections_total", []string{l, `node="metered"`, `local="` + echo + `"`}, 1},
			{"p2prc_handshake_duration_seconds_count", nil, 1},
			{"p2prc_build_info", []string{`version="v9.9.9"`, `revision="0123abc"`}, 1},
		} {
			if got := sample(t, page, c.name, c.labels...); got != c.want {
				t.Errorf("%s: %s%v = %v, want %v", s.url, c.name, c.labels, got, c.want)
			}
		}
	}

	// /api/status says the same.
	for _, s := range []served{relay, node} {
		var r Report
		if err := json.Unmarshal([]byte(get(t, s.url+"/api/status")), &r); err != nil {
			t.Fatal(err)
		}
		if r.Sessions != 1 || len(r.Nodes) != 1 || len(r.Nodes[0].Mappings) != 1 || r.UptimeSeconds <= 0 {
			t.Fatalf("%s /api/status: %+v", s.url, r)
		}
		m := r.Nodes[0].Mappings[0]
		want := tunnel.TrafficStats{BytesIn: total, BytesOut: total, Visits: 1}
		if m.Port != port || m.Local != echo || m.Type != "TCP" || m.Traffic != want || r.Nodes[0].Name != "metered" {
			t.Fatalf("%s /api/status mapping %+v of node %q; want port %d, local %s, traffic %+v", s.url, m, r.Nodes[0].Name, port, echo, want)
		}
	}
}

// Failed authentication and refusals are counted by reason, on both sides.
func TestMetricsCountRefusals(t *testing.T) {
	echo := startEcho(t)
	relayAddr, relay := startRelay(t)
	port, _ := startNode(t, relayAddr, nodeOpts{name: "owner", local: echo})

	if got, bad := startNode(t, relayAddr, nodeOpts{name: "intruder", local: echo, token: []byte("wrong")}); got != 0 {
		t.Fatalf("a node with the wrong token was granted port %d", got)
	} else if v := sample(t, get(t, bad.url+"/metrics"), "p2prc_auth_failures_total"); v < 1 {
		t.Errorf("the refused node counted %v auth failures, want ≥ 1", v)
	}
	if got, thief := startNode(t, relayAddr, nodeOpts{name: "thief", local: echo, wantPort: port}); got != 0 {
		t.Fatalf("a node was granted port %d, owned by another", got)
	} else if v := sample(t, get(t, thief.url+"/metrics"), "p2prc_refusals_total", `reason="owned"`); v != 1 {
		t.Errorf("the refused node counted %v refusals for owned, want 1", v)
	}
	page := get(t, relay.url+"/metrics")
	if v := sample(t, page, "p2prc_auth_failures_total"); v < 1 {
		t.Errorf("the relay counted %v auth failures, want ≥ 1", v)
	}
	for reason, want := range map[string]float64{"owned": 1, "in_use": 0} {
		if v := sample(t, page, "p2prc_refusals_total", `reason="`+reason+`"`); v != want {
			t.Errorf("the relay counted %v refusals for %s, want %v", v, reason, want)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for sample(t, get(t, relay.url+"/metrics"), "p2prc_sessions") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("p2prc_sessions is not back to 1 after the refused nodes left")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
