package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/p2prc/p2prc/registry"
)

func runCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = run(ctx, args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestTranslateSeed(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
	}{
		{[]string{"-s", "--reverse-proxy"}, []string{"relay"}},
		{[]string{"-s", "--reverse-proxy", "--ports", "30000-30010"}, []string{"relay", "--ports", "30000-30010"}},
		{[]string{"-s", "--connect-reverse-proxy", "203.0.113.7:8700"}, []string{"node", "--relay", "203.0.113.7:8700", "--expose", "tcp:8088"}},
		{[]string{"--connect-reverse-proxy=r:1", "--expose", "tcp:22"}, []string{"node", "--relay", "r:1", "--expose", "tcp:22"}},
		{[]string{"--view-rpm", "--json"}, []string{"mappings", "--json"}},
		{[]string{"--view-reverse-proxy-mapping"}, []string{"mappings"}},
		{[]string{"--view-rps", "--json"}, []string{"relays", "--json"}},
		{[]string{"--view-reverse-proxy-servers", "--state", "d"}, []string{"relays", "--state", "d"}},
	}
	for _, tt := range tests {
		got, ok := translateSeed(tt.in)
		if !ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("translateSeed(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
	if _, ok := translateSeed([]string{"relay", "--ports", "1-2"}); ok {
		t.Error("a plain subcommand was translated")
	}
}

func TestDemoRunsAndExplains(t *testing.T) {
	out, _, err := runCmd(t, "demo")
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"granted 127.0.0.1:", "200 OK", "Hello from behind the NAT!", "TCP", "demo-node", "TLS 1.3", "pinned its fingerprint"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func TestMappingsListing(t *testing.T) {
	dir := t.TempDir()
	maps, err := registry.OpenMappings(filepath.Join(dir, registry.MappingFileName))
	if err != nil {
		t.Fatal(err)
	}
	m := registry.Mapping{ServerName: "r1", Address: "203.0.113.7", Type: "TCP", BlindPort: 30022,
		Owner: "0123456789abcdef", NodeName: "home", Local: "127.0.0.1:22", Created: time.Now(), LastSeen: time.Now()}
	if err := maps.Put(m); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, "mappings", "--state", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"TYPE", "PUBLIC", "203.0.113.7:30022", "127.0.0.1:22", "home", "01234567"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// --json and the seed spelling print exactly the file's JSON.
	for _, args := range [][]string{{"mappings", "--json", "--state", dir}, {"--view-rpm", "--json", "--state", dir}} {
		out, _, err = runCmd(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		file, _ := os.ReadFile(maps.Path())
		var a, b any
		if json.Unmarshal([]byte(out), &a) != nil || json.Unmarshal(file, &b) != nil || !reflect.DeepEqual(a, b) {
			t.Errorf("%q printed\n%s\nthe file holds\n%s", args, out, file)
		}
	}
}

func TestBadCommandLines(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"node", "--expose", "tcp:22"}, "--relay"},
		{[]string{"node", "--relay", "127.0.0.1:1"}, "nothing to expose"},
		{[]string{"node", "--relay", "127.0.0.1:1", "--expose", "sctp:1"}, "tcp|udp"},
		{[]string{"relay", "--ports", "80-90"}, "privileged"},
		{[]string{"relay", "--ports", "nonsense"}, "--ports"},
		{[]string{"relay", "--log-level", "loud"}, "--log-level"},
		{[]string{"relay", "--lease", "-1s", "--token", "t"}, "must not be negative"},
		{[]string{"relay", "--public-host", "127.0.0.1:8700", "--token", "t"}, "without a port"},
		{[]string{"relay", "--bind-host", "999.1.1.1", "--token", "t"}, "--bind-host"},
		{[]string{"node", "--relay", "nonsense", "--expose", "tcp:22", "--token", "t"}, "HOST:PORT"},
		{[]string{"node", "--relay", "127.0.0.1:1", "--expose", "tcp:22", "--token", "t", "--peer-timeout", "-1s"}, "must not be negative"},
		{[]string{"-s"}, "--reverse-proxy"},
		{[]string{"-s", "--connect-reverse-proxy", "--token", "t"}, "HOST:PORT"},
	}
	for _, tt := range tests {
		t.Setenv("P2PRC_TOKEN", "")
		_, _, err := runCmd(t, append(tt.args, stateArgs(t, tt.args)...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want it to mention %q", tt.args, err, tt.want)
		}
	}
}

// stateArgs keeps commands that take --state away from the real home.
func stateArgs(t *testing.T, args []string) []string {
	if len(args) > 0 && (args[0] == "relay" || args[0] == "node") {
		return []string{"--state", t.TempDir()}
	}
	return nil
}

func TestNodeWithoutTokenSaysWhatToDo(t *testing.T) {
	t.Setenv("P2PRC_TOKEN", "")
	_, _, err := runCmd(t, "node", "--relay", "127.0.0.1:1", "--expose", "tcp:22", "--state", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--token-file") {
		t.Fatalf("err = %v", err)
	}
}

func TestVersion(t *testing.T) {
	out, _, err := runCmd(t, "version")
	if err != nil || !strings.HasPrefix(out, "p2prc ") {
		t.Fatalf("version: %q, %v", out, err)
	}
}
