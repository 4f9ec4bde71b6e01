package registry_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/p2prc/p2prc/registry"
)

// writeFuzzFile puts data where a table would read it.
func writeFuzzFile(t *testing.T, name string, data []byte) string {
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func FuzzLoadMappings(f *testing.F) {
	f.Add([]byte(`{"reverse_proxy_mappings": [{"Server_name": "r", "Address": "203.0.113.7", "Type": "TCP", "blind_port": 30001}]}`))
	f.Add([]byte(`{"reverse_proxy_mappings": [{"Type": "udp", "blind_port": 1, "Created": "2025-01-02T03:04:05.123+05:30"}]}`))
	f.Add([]byte(`{"reverse_proxy_mappings": null}`))
	f.Add([]byte(`{"reverse_proxy_mappings": [{"Type": "TCP", "blind_port": 9, "Created": "9999-12-31T23:59:59.9999999999-23:59", "Last_seen": "0000-01-01T00:00:00+00:01"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := registry.OpenMappings(writeFuzzFile(t, registry.MappingFileName, data))
		if err != nil {
			if !errors.Is(err, registry.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		first := tab.List()
		if err := tab.Replace(first); err != nil {
			t.Fatalf("saving what loaded: %v", err)
		}
		again, err := registry.OpenMappings(tab.Path())
		if err != nil {
			t.Fatalf("loading what was saved: %v", err)
		}
		second := again.List()
		if len(first) != len(second) {
			t.Fatalf("round trip: %d mappings became %d", len(first), len(second))
		}
		for i := range first {
			a, b := first[i], second[i]
			if !a.Created.Equal(b.Created) || !a.LastSeen.Equal(b.LastSeen) {
				t.Fatalf("round trip changed times: %+v became %+v", a, b)
			}
			a.Created, a.LastSeen = b.Created, b.LastSeen
			if a != b {
				t.Fatalf("round trip: %+v became %+v", first[i], second[i])
			}
		}
	})
}

func FuzzLoadServers(f *testing.F) {
	f.Add([]byte(`{"reverse_proxy_servers": [{"Server_name": "r", "Address": "203.0.113.7:7000", "Latency": 1500000}]}`))
	f.Add([]byte(`{"reverse_proxy_servers": [{"Address": "[2001:db8::1]:7", "Last_seen": "2025-01-02T03:04:05Z", "TLS_fingerprint": "ab"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := registry.OpenServers(writeFuzzFile(t, registry.ServerFileName, data))
		if err != nil {
			if !errors.Is(err, registry.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		first := s.List()
		if len(first) == 0 {
			return
		}
		// Remove and re-add the first entry: both save the whole table.
		if err := s.Remove(first[0].Address); err != nil {
			t.Fatal(err)
		}
		if err := s.Upsert(first[0]); err != nil {
			t.Fatalf("saving what loaded: %v", err)
		}
		again, err := registry.OpenServers(s.Path())
		if err != nil {
			t.Fatalf("loading what was saved: %v", err)
		}
		second := again.List()
		if len(first) != len(second) {
			t.Fatalf("round trip: %d relays became %d", len(first), len(second))
		}
		for i := range first {
			a, b := first[i], second[i]
			if !a.LastSeen.Equal(b.LastSeen) {
				t.Fatalf("round trip changed Last_seen: %v became %v", a.LastSeen, b.LastSeen)
			}
			a.LastSeen = b.LastSeen
			if a != b {
				t.Fatalf("round trip: %+v became %+v", first[i], second[i])
			}
		}
	})
}
