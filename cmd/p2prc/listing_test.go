package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/p2prc/p2prc/iptable"
	"github.com/p2prc/p2prc/registry"
)

// sameJSON reports whether two documents hold the same values.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return reflect.DeepEqual(x, y)
}

// matchLines checks that out has one line per pattern, each matching its
// pattern once trailing spaces are cut, and returns the lines.
func matchLines(t *testing.T, out string, patterns ...string) []string {
	t.Helper()
	var got []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		got = append(got, strings.TrimRight(l, " "))
	}
	if len(got) != len(patterns) {
		t.Fatalf("%d lines, want %d:\n%s", len(got), len(patterns), out)
	}
	for i, p := range patterns {
		if !regexp.MustCompile(p).MatchString(got[i]) {
			t.Errorf("line %d %q does not match %s; table:\n%s", i+1, got[i], p, out)
		}
	}
	return got
}

func TestRelaysListing(t *testing.T) {
	dir := t.TempDir()
	relays, err := registry.OpenServers(filepath.Join(dir, registry.ServerFileName))
	if err != nil {
		t.Fatal(err)
	}
	relays.Upsert(registry.Server{Name: "far", Address: "198.51.100.9:8700", Latency: 80 * time.Millisecond, LastSeen: time.Now().Add(-3 * time.Hour)})
	relays.Upsert(registry.Server{Name: "near", Address: "203.0.113.7:8700", Latency: 12500 * time.Microsecond, LastSeen: time.Now()})
	relays.Merge([]registry.Server{{Address: "relay.example:8700"}}) // heard of from a peer, never measured

	out, _, err := runCmd(t, "relays", "--state", dir)
	if err != nil {
		t.Fatal(err)
	}
	got := matchLines(t, out,
		`^NAME +ADDRESS +LATENCY \(ms\) +LAST SEEN +SOURCE$`,
		`^near +203\.0\.113\.7:8700 +12\.5 +\d+s +added here$`,
		`^far +198\.51\.100\.9:8700 +80\.0 +3h +added here$`,
		`^- +relay\.example:8700 +- +- +learnt from a peer \(relays add to use it\)$`)
	// The columns line up.
	if col := strings.Index(got[0], "ADDRESS"); strings.Index(got[1], "203.") != col || strings.Index(got[3], "relay.") != col {
		t.Errorf("columns do not line up:\n%s", out)
	}

	file, _ := os.ReadFile(relays.Path())
	for _, args := range [][]string{
		{"relays", "--json"}, {"--view-rps", "--json"}, {"--view-reverse-proxy-servers", "--json"},
	} {
		out, _, err := runCmd(t, append(args, "--state", dir)...)
		if err != nil {
			t.Fatal(err)
		}
		if !sameJSON(t, []byte(out), file) {
			t.Errorf("%q printed\n%s\nthe file holds\n%s", args, out, file)
		}
	}
	// The seed's spelling prints the table too.
	if out, _, _ := runCmd(t, "--view-rps", "--state", dir); !strings.Contains(out, "near") {
		t.Errorf("--view-rps printed:\n%s", out)
	}
}

// A table as P2PRC writes it today, with keys this build does not know, and
// one in the 2021 format: both listed, and printed as JSON in today's
// format without losing anything.
func TestIPTableListing(t *testing.T) {
	dir := t.TempDir()
	today := filepath.Join(dir, "today.json")
	os.WriteFile(today, []byte(`{"ip_address": [
  {"Name": "relay-1", "IPV4": "203.0.113.7", "ServerPort": "8700", "ProxyServer": true, "Latency": 12500000},
  {"Name": "home", "IPV4": "203.0.113.7", "ServerPort": "30001", "UDPServerPort": "30053", "NAT": false,
   "EscapeImplementation": "p2prc-relay", "GPU": {"model": "rtx", "mem": 24}},
  {"Name": "lab", "IPV6": "2001:db8::5", "ServerPort": "8088", "NAT": "False"}
 ], "Version": 3}`), 0o600)
	old := filepath.Join(dir, "2021.json")
	os.WriteFile(old, []byte(`{"ip_address":[{"ipv4":"145.40.90.151","latency":139109233,"download":6.38,"upload":896786.58,"serverport":"8088"}]}`), 0o600)

	out, _, err := runCmd(t, "iptable", "--ip-table", today, "--state", dir)
	if err != nil {
		t.Fatal(err)
	}
	matchLines(t, out,
		`^TYPE +ADDRESS +NAME +UDP PORT +LATENCY \(ms\)$`,
		`^relay +203\.0\.113\.7:8700 +relay-1 +- +12\.5$`,
		`^relayed +203\.0\.113\.7:30001 +home +30053 +-$`,
		`^public +\[2001:db8::5\]:8088 +lab +- +-$`)

	out, _, err = runCmd(t, "iptable", "--ip-table", today, "--json", "--state", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"GPU": {`, `"model": "rtx"`, `"Version": 3`, `"EscapeImplementation": "p2prc-relay"`, `"NAT": false`} {
		if !strings.Contains(out, want) {
			t.Errorf("--json lacks %s:\n%s", want, out)
		}
	}
	back := filepath.Join(dir, "back.json")
	os.WriteFile(back, []byte(out), 0o600)
	a, _ := iptable.Load(today)
	b, err := iptable.Load(back)
	if err != nil || !reflect.DeepEqual(entryNames(a), entryNames(b)) || len(b.Entries[1].Extra) != 1 {
		t.Fatalf("what --json printed reads back as %+v (%v)", b, err)
	}

	out, _, err = runCmd(t, "iptable", "--ip-table", old, "--json", "--state", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"IPV4": "145.40.90.151"`, `"Latency": 139109233`, `"Download": 6.38`, `"Upload": 896786.58`, `"ServerPort": "8088"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the 2021 table printed without %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"ipv4"`) {
		t.Errorf("printed in the 2021 format:\n%s", out)
	}
	// The state dir's own table is the default.
	if out, _, err := runCmd(t, "iptable", "--state", dir); err != nil || !strings.Contains(out, "empty") {
		t.Errorf("empty state dir: %q, %v", out, err)
	}
}

func entryNames(t *iptable.Table) []string {
	var ns []string
	for _, e := range t.Entries {
		ns = append(ns, e.Name+"@"+e.IPV4+e.IPV6+":"+e.ServerPort)
	}
	return ns
}

// A corrupt file is an error naming the file and line, and stays as it was,
// whichever command meets it.
func TestCorruptFilesThroughCommands(t *testing.T) {
	t.Setenv("P2PRC_TOKEN", "tok")
	corrupt := "{\n  \"oops\": [1,\n}\n"
	tests := []struct {
		file string
		args []string
	}{
		{registry.ServerFileName, []string{"relays"}},
		{registry.ServerFileName, []string{"--view-rps"}},
		{registry.ServerFileName, []string{"relays", "add", "127.0.0.1:1"}},
		{registry.ServerFileName, []string{"relays", "probe"}},
		{registry.ServerFileName, []string{"node", "--relay", "auto", "--expose", "tcp:1"}},
		{registry.ServerFileName, []string{"relay", "--listen", "127.0.0.1:0", "--ports", "40000-40001"}},
		{iptable.FileName, []string{"iptable"}},
		{iptable.FileName, []string{"node", "--relay", "127.0.0.1:1", "--expose", "tcp:1"}},
		{iptable.FileName, []string{"relay", "--listen", "127.0.0.1:0", "--ports", "40000-40001"}},
		{registry.MappingFileName, []string{"mappings"}},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		path := filepath.Join(dir, tt.file)
		os.WriteFile(path, []byte(corrupt), 0o600)
		_, _, err := runCmd(t, append(tt.args, "--state", dir)...)
		if err == nil || !strings.Contains(err.Error(), path) || !regexp.MustCompile(`line 3|:3:`).MatchString(err.Error()) {
			t.Errorf("%q with a corrupt %s: err = %v; want the file and line 3", tt.args, tt.file, err)
		}
		if data, _ := os.ReadFile(path); string(data) != corrupt {
			t.Errorf("%q changed the corrupt %s to %q", tt.args, tt.file, data)
		}
	}
}

func TestRelaysAddRefusesBadAddress(t *testing.T) {
	dir := t.TempDir()
	for _, bad := range []string{"nonsense", "host:0", ":8700"} {
		_, _, err := runCmd(t, "relays", "add", bad, "--state", dir)
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("relays add %q: %v", bad, err)
		}
	}
	if _, _, err := runCmd(t, "relays", "probe", "--state", dir); err == nil || !strings.Contains(err.Error(), "relays add") {
		t.Errorf("probe with no relays: %v", err)
	}
	if _, _, err := runCmd(t, "node", "--relay", "auto", "--expose", "tcp:1", "--token", "t", "--state", dir); err == nil || !strings.Contains(err.Error(), "relays probe") {
		t.Errorf("--relay auto with no measured relay: %v", err)
	}
}
