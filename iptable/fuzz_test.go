package iptable

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad: Load never panics; whatever it reads, Save writes and Load reads
// back as the same table, and saving that again gives the same bytes.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		``,
		`{}`,
		`{"ip_address":null}`,
		`{"ip_address":[{"ipv4":"145.40.90.151","latency":139109233,"download":6.38,"upload":896786.58}]}`,
		`{"ip_address":[{"Name":"n","IPV4":"198.51.100.1","ServerPort":"30001","NAT":false,` +
			`"EscapeImplementation":"p2prc-relay","Future":{"a":[1,2.50,"<b>"]}}],"version":3}`,
		`{"ip_address":[{"NAT":"True","ProxyServer":"false","ServerPort":8088,"IPV4":"a","ipv4":"b"}]}`,
		`{"IP_ADDRESS":[{}],"ip_address":[{"x":"\u00e9\ud800"}],"a":1,"A":2}`,
		`{"ip_address":[{"Latency":1.5}]}`,
		`{"ip_address":[1]}`,
		`[]`,
		`{} {}`,
		"{\"ip_address\": [\n{\"IPV4\": \"1.2",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		in := filepath.Join(dir, FileName)
		if err := os.WriteFile(in, data, 0o600); err != nil {
			t.Fatal(err)
		}
		first, err := Load(in)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Load error is neither ErrCorrupt nor ErrTooLarge: %v", err)
			}
			return
		}
		out := filepath.Join(dir, "out.json")
		if err := first.Save(out); err != nil {
			if errors.Is(err, ErrTooLarge) {
				return
			}
			t.Fatalf("Save: %v", err)
		}
		written, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		second, err := Load(out)
		if err != nil {
			t.Fatalf("Load of what Save wrote: %v\n%s", err, written)
		}
		if !sameTable(t, first, second) {
			t.Fatalf("round trip changed the table:\nfirst  %+v\nsecond %+v\nwritten %s", first, second, written)
		}
		if err := second.Save(out); err != nil {
			t.Fatal(err)
		}
		again, _ := os.ReadFile(out)
		if !bytes.Equal(written, again) {
			t.Fatalf("second save differs:\n%s\n%s", written, again)
		}
	})
}
