package status

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The status page as a person sees it: loaded by a real browser (headless
// Chromium, which .ci/run installs), while a visitor is connected.

// findChromium returns the path of a Chromium binary; without one the test
// skips, except in CI (P2PRC_CI=1), where it fails.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const why = "no chromium on PATH: the status page test needs a headless browser (Debian: apt-get install chromium; .ci/run installs it)"
	if os.Getenv("P2PRC_CI") == "1" {
		t.Fatal(why)
	}
	t.Skip(why)
	return ""
}

// dumpDOM loads url in headless Chromium and returns the DOM after load.
// Chromium and every process it starts run in their own process group,
// which is killed when it is done or out of time.
func dumpDOM(t *testing.T, chromium, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--no-proxy-server",
		"--user-data-dir="+t.TempDir(), "--dump-dom", url)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // leave no helper process behind
	}
	if err != nil {
		t.Fatalf("chromium --dump-dom %s: %v\nstderr:\n%s", url, err, stderr.String())
	}
	return stdout.String()
}

// rowOf returns the table row of the mapping on port from a DOM dump.
func rowOf(t *testing.T, dom string, port int) string {
	t.Helper()
	re := regexp.MustCompile(`(?s)<tr class="mapping" data-port="` + strconv.Itoa(port) + `">.*?</tr>`)
	row := re.FindString(dom)
	if row == "" {
		t.Fatalf("the page shows no row for port %d; DOM:\n%s", port, dom)
	}
	return row
}

// cells returns the text of each cell of a row.
func cells(row string) []string {
	var out []string
	tags := regexp.MustCompile(`<[^>]*>`)
	for _, m := range regexp.MustCompile(`(?s)<td[^>]*>(.*?)</td>`).FindAllStringSubmatch(row, -1) {
		out = append(out, strings.TrimSpace(tags.ReplaceAllString(m[1], "")))
	}
	return out
}

func TestStatusPageInBrowserShowsLiveMapping(t *testing.T) {
	chromium := findChromium(t)
	echo := startEcho(t)
	relayAddr, relay := startRelay(t)
	port, node := startNode(t, relayAddr, nodeOpts{name: "<i>web</i>", local: echo})

	// A visitor is connected, and has exchanged 2 KiB each way.
	c := dialVisitor(t, port)
	transferStep(t, c, bytes.Repeat([]byte("x"), 2048))
	checkTraffic(t, port, 2048, 1, relay, node)

	for _, side := range []struct {
		name string
		url  string
	}{{"relay", relay.url}, {"node", node.url}} {
		dom := dumpDOM(t, chromium, side.url+"/")
		got := cells(rowOf(t, dom, port))
		// Type, public port, local target, age, open now, visitors, in, out.
		want := []string{"TCP", strconv.Itoa(port), echo, "", "1", "1", "2.0 KiB", "2.0 KiB"}
		if len(got) != len(want) {
			t.Fatalf("%s page: mapping row has cells %q, want %d cells like %q", side.name, got, len(want), want)
		}
		for i := range want {
			if want[i] != "" && got[i] != want[i] {
				t.Errorf("%s page: cell %d is %q, want %q (row %q)", side.name, i, got[i], want[i], got)
			}
		}
		if !regexp.MustCompile(`^\d+s$`).MatchString(got[3]) {
			t.Errorf("%s page: age %q, want seconds", side.name, got[3])
		}
		// The node's self-chosen name is text, not markup.
		if !strings.Contains(dom, "&lt;i&gt;web&lt;/i&gt;") || strings.Contains(dom, "<i>web</i>") {
			t.Errorf("%s page: the node name is not shown escaped:\n%s", side.name, dom)
		}
		if !strings.Contains(dom, `class="up">connected<`) { // not "not connected", not "disconnected"
			t.Errorf("%s page does not say the node is connected:\n%s", side.name, dom)
		}
	}
}
