package main

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2prc/p2prc/cmd/p2prc/internal/status"
)

// fetchJSON GETs url and decodes its JSON into v.
func fetchJSON(t *testing.T, url string, v any) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// --metrics on relay and node serves their status; SIGUSR1 makes the node
// print its mappings again.
func TestMetricsFlagAndMappingsOnSignal(t *testing.T) {
	addr, lo := freePort(t), freeRange(t, 20)
	relayStatus, nodeStatus := freePort(t), freePort(t)
	start(t, nil, relayArgs(addr, t.TempDir(), lo, "--token", "tok", "--metrics", relayStatus)...).
		stderr.waitFor(t, relayReady, 20*time.Second)
	svc := echoServer(t)
	n := start(t, []string{"P2PRC_TOKEN=tok"}, "node", "--relay", addr, "--expose", "tcp:"+svc, "--name", "n1",
		"--state", t.TempDir(), "--metrics", nodeStatus)
	line := n.stdout.waitFor(t, exposedLine, 20*time.Second)[0]

	for _, url := range []string{"http://" + relayStatus + "/api/status", "http://" + nodeStatus + "/api/status"} {
		var r status.Report
		fetchJSON(t, url, &r)
		if r.Sessions != 1 || len(r.Nodes) != 1 || r.Nodes[0].Name != "n1" || len(r.Nodes[0].Mappings) != 1 ||
			r.Nodes[0].Mappings[0].Local != svc || !strings.HasPrefix(r.Version, "p2prc ") {
			t.Fatalf("%s: %+v", url, r)
		}
	}

	n.cmd.Process.Signal(syscall.SIGUSR1)
	again := regexp.MustCompile(regexp.QuoteMeta(line) + `(?s:.*)` + regexp.QuoteMeta(line))
	n.stdout.waitFor(t, again, 10*time.Second)
}

func TestMetricsFlagBadAddress(t *testing.T) {
	_, _, err := runCmd(t, "relay", "--listen", "127.0.0.1:0", "--token", "x", "--state", t.TempDir(), "--metrics", "127.0.0.1:notaport")
	if err == nil || !strings.Contains(err.Error(), "--metrics") {
		t.Fatalf("err = %v, want one naming --metrics", err)
	}
}
