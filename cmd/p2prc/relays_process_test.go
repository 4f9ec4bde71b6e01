package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/p2prc/p2prc/iptable"
	"github.com/p2prc/p2prc/registry"
)

// A relay added by hand is measured; a node with --relay auto uses it and
// keeps P2PRC's own table current without losing what P2PRC wrote there;
// the relay answers a listing for the node while the node runs.
func TestRelaysAddAutoAndLiveListing(t *testing.T) {
	addr, _ := startRelayProcess(t, "tok")
	svc := echoServer(t)
	state := t.TempDir()
	t.Setenv("P2PRC_TOKEN", "tok")

	out, _, err := runCmd(t, "relays", "add", addr, "--state", state)
	if err != nil || !regexp.MustCompile(`^added \S+ \(\S+\), latency \d+\.\d ms\n$`).MatchString(out) {
		t.Fatalf("relays add: %q, %v", out, err)
	}
	relays, err := registry.OpenServers(filepath.Join(state, registry.ServerFileName))
	if err != nil {
		t.Fatal(err)
	}
	if sv, ok := relays.Get(addr); !ok || sv.Latency <= 0 || sv.Name == "" {
		t.Fatalf("after relays add: %+v", relays.List())
	}
	out, _, err = runCmd(t, "relays", "probe", "--state", state)
	if err != nil || !strings.Contains(out, "smallest of 5 round trips") {
		t.Fatalf("relays probe with a token: %q, %v", out, err)
	}

	// P2PRC's own table, with keys this build does not know.
	p2prcTable := filepath.Join(t.TempDir(), iptable.FileName)
	os.WriteFile(p2prcTable, []byte(`{"ip_address":[{"Name":"lab","IPV4":"198.51.100.4","ServerPort":"8088",`+
		`"PublicKey":"ssh-ed25519 AAAA","GPU":{"model":"rtx"}}],"Version":3}`), 0o600)
	n := start(t, []string{"P2PRC_TOKEN=tok"}, "node", "--relay", "auto", "--expose", "tcp:"+svc,
		"--name", "home", "--state", state, "--ip-table", p2prcTable)
	m := n.stdout.waitFor(t, exposedLine, 20*time.Second)
	public := m[2]
	_, port, _ := net.SplitHostPort(public)
	if !strings.Contains(n.stderr.String(), "relay_addr="+addr) {
		t.Errorf("the node does not say which relay auto chose:\n%s", n.stderr.String())
	}
	echoThrough(t, public)

	tab, err := iptable.Load(p2prcTable)
	if err != nil {
		t.Fatal(err)
	}
	var own, lab *iptable.Entry
	for i, e := range tab.Entries {
		switch e.Name {
		case "home":
			own = &tab.Entries[i]
		case "lab":
			lab = &tab.Entries[i]
		}
	}
	if own == nil || own.IPV4 != "127.0.0.1" || own.ServerPort != port || own.EscapeImplementation != iptable.EscapeImplementation {
		t.Errorf("the node's own entry: %+v", own)
	}
	if lab == nil || lab.PublicKey != "ssh-ed25519 AAAA" || string(lab.Extra["GPU"]) == "" || string(tab.Extra["Version"]) != "3" {
		t.Errorf("P2PRC's entries or keys were lost: %+v", tab)
	}

	// The relay lists this node's mappings while the node runs.
	out, _, err = runCmd(t, "mappings", "--relay", addr, "--state", state)
	if err != nil || !strings.Contains(out, public) || !strings.Contains(out, svc) || !strings.Contains(out, "home") {
		t.Fatalf("mappings --relay: %q, %v", out, err)
	}
	out, _, err = runCmd(t, "mappings", "--relay", addr, "--json", "--state", state)
	var f registry.MappingFile
	if err != nil || json.Unmarshal([]byte(out), &f) != nil || len(f.Mappings) != 1 || fmt.Sprint(f.Mappings[0].BlindPort) != port {
		t.Fatalf("mappings --relay --json: %q, %v", out, err)
	}
	select {
	case err := <-n.done:
		t.Fatalf("the node exited after a listing: %v\n%s", err, n.stderr.String())
	case <-time.After(200 * time.Millisecond):
	}
	echoThrough(t, public)

	// Without the token a probe still measures, with one round trip.
	t.Setenv("P2PRC_TOKEN", "")
	out, _, err = runCmd(t, "relays", "probe", "--state", state)
	if err != nil || !strings.Contains(out, "hello to challenge") {
		t.Fatalf("relays probe without a token: %q, %v", out, err)
	}
	if _, _, err := runCmd(t, "mappings", "--relay", addr, "--state", state); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("mappings --relay without a token: %v", err)
	}
	if _, _, err := runCmd(t, "mappings", "--relay", addr, "--token", "tok", "--state", t.TempDir()); err == nil || !strings.Contains(err.Error(), "no node identity") {
		t.Errorf("mappings --relay without a node identity: %v", err)
	}
}

// echoThrough checks that a line sent to addr comes back.
func echoThrough(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(c, "hello through the relay")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "hello through the relay\n" {
		t.Fatalf("echo through %s: %q, %v", addr, line, err)
	}
}
