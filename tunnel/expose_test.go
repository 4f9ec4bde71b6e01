package tunnel

import (
	"strings"
	"testing"
)

func TestParseExpose(t *testing.T) {
	good := []struct {
		in   string
		want Expose
	}{
		{"tcp:8080", Expose{Network: "tcp", Local: "127.0.0.1:8080"}},
		{"udp:10.0.0.5:53=30053", Expose{Network: "udp", Local: "10.0.0.5:53", RemotePort: 30053}},
		{"tcp:[::1]:22", Expose{Network: "tcp", Local: "[::1]:22"}},
		{"tcp:localhost:3000=31000", Expose{Network: "tcp", Local: "localhost:3000", RemotePort: 31000}},
		{"TCP:8080", Expose{Network: "tcp", Local: "127.0.0.1:8080"}},
		{"tcp::8080", Expose{Network: "tcp", Local: "127.0.0.1:8080"}},
		{"udp:65535=1", Expose{Network: "udp", Local: "127.0.0.1:65535", RemotePort: 1}},
	}
	for _, tt := range good {
		got, err := ParseExpose(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseExpose(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		// The canonical form parses back to the same thing.
		if back, err := ParseExpose(got.String()); err != nil || back != got {
			t.Errorf("ParseExpose(%q.String() = %q) = %+v, %v", tt.in, got.String(), back, err)
		}
	}

	bad := []struct {
		in     string
		errHas string
	}{
		{"8080", "missing tcp: or udp:"},
		{"", "missing tcp: or udp:"},
		{"localhost:8080", `unknown type "localhost"`},
		{"sctp:1", `unknown type "sctp"`},
		{"tcp:", "local port"},
		{"tcp:http", "local port"},
		{"tcp:0", "local port"},
		{"tcp:70000", "local port"},
		{"tcp:+80", "local port"},
		{"tcp:0080", "local port"},
		{"tcp:-1", "local port"},
		{"tcp:10.0.0.5:", "local port"},
		{"tcp:8080=", "remote port"},
		{"tcp:8080=0", "remote port"},
		{"udp:53=70000", "remote port"},
		{"tcp:::1:22", "too many colons"},
	}
	for _, tt := range bad {
		got, err := ParseExpose(tt.in)
		if err == nil {
			t.Errorf("ParseExpose(%q) = %+v, want an error", tt.in, got)
			continue
		}
		// The message names the input and shows the right form.
		msg := err.Error()
		if !strings.Contains(msg, tt.errHas) || !strings.Contains(msg, "tcp|udp:[HOST:]PORT[=REMOTE_PORT]") {
			t.Errorf("ParseExpose(%q) error %q; want it to say %q and show the form", tt.in, msg, tt.errHas)
		}
	}
}

func FuzzParseExpose(f *testing.F) {
	for _, s := range []string{"tcp:8080", "udp:10.0.0.5:53=30053", "tcp:[::1]:22", "tcp:", "x:1=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseExpose(s)
		if err != nil {
			return
		}
		again, err := ParseExpose(e.String())
		if err != nil || again != e {
			t.Fatalf("%q parsed to %+v, whose String %q parses to %+v (%v)", s, e, e.String(), again, err)
		}
	})
}
