package status

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/p2prc/p2prc/tunnel"
)

// fakeSource reports a fixed status.
type fakeSource tunnel.Status

func (f fakeSource) Status() tunnel.Status { return tunnel.Status(f) }

// Node names and local targets come from peers; the page shows them as
// text, never as markup, and forbids script in any case.
func TestPageEscapesWhatPeersChose(t *testing.T) {
	now := time.Now()
	src := fakeSource{
		Role: "relay", Name: "r1", Started: now.Add(-time.Hour), PublicHost: "203.0.113.7",
		Nodes: []tunnel.NodeStatus{{
			ID: "abc", Name: "<b>evil</b>", Connected: true, Since: now.Add(-time.Minute), Remote: "198.51.100.2:4000",
			Mappings: []tunnel.MappingStatus{{
				Type: "TCP", Port: 30022, Public: "203.0.113.7:30022", Local: `"><script>alert(1)</script>`, Created: now.Add(-2 * time.Hour),
				Traffic: tunnel.TrafficStats{BytesIn: 3 << 20, BytesOut: 1536, Connections: 2, Visits: 9},
			}},
		}},
	}
	m := NewMetrics(testBuild)
	srv := serveStatus(t, m, src)
	resp, err := http.Get(srv.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q does not forbid scripts and outside assets", csp)
	}
	page := get(t, srv.url+"/")
	for _, bad := range []string{"<script", "<b>evil", "src=", "http://", "https://"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page contains %q:\n%s", bad, page)
		}
	}
	for _, want := range []string{
		"&lt;b&gt;evil&lt;/b&gt;", "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;",
		`data-port="30022"`, "3.0 MiB", "1.5 KiB", ">2<", ">9<", "2h 0m", "up <b>1h 0m</b>", "198.51.100.2:4000",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q:\n%s", want, page)
		}
	}
	// Prometheus labels get the same strings verbatim, quoted by the format.
	if v := sample(t, get(t, srv.url+"/metrics"), "p2prc_visitor_connections", `node="<b>evil</b>"`); v != 2 {
		t.Errorf("p2prc_visitor_connections = %v, want 2", v)
	}
}

// A 404 for what is not served, rather than the page at every path.
func TestUnknownPathIsNotFound(t *testing.T) {
	srv := serveStatus(t, NewMetrics(testBuild), fakeSource{Role: "relay"})
	resp, err := http.Get(srv.url + "/admin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /admin: %s, want 404", resp.Status)
	}
}

func TestFormats(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 10 << 20: "10.0 MiB", 5 << 40: "5.0 TiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 12 * time.Second: "12s", 4*time.Minute + 10*time.Second: "4m 10s",
		2*time.Hour + 5*time.Minute: "2h 5m", 76 * time.Hour: "3d 4h",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
