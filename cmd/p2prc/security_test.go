package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/p2prc/p2prc/registry"
	"github.com/p2prc/p2prc/registry/secret"
)

// The command line's security: TLS by default with the fingerprint printed
// and pinned, plaintext only when both sides ask, and the token kept out of
// everything we print or write.

var fingerprintLine = regexp.MustCompile(`fingerprint=([0-9a-f]{64})`)

// startTLSRelay runs a relay process with default security and no token,
// so it creates both; it returns its address, state dir and fingerprint.
func startTLSRelay(t *testing.T, extra ...string) (addr, dir, fp string, p *proc) {
	t.Helper()
	addr, dir = freePort(t), t.TempDir()
	lo := freeRange(t, 20)
	p = start(t, []string{"P2PRC_TOKEN="}, relayArgs(addr, dir, lo, extra...)...)
	p.stderr.waitFor(t, relayReady, 20*time.Second)
	if m := fingerprintLine.FindStringSubmatch(p.stderr.String()); m != nil {
		fp = m[1]
	}
	return addr, dir, fp, p
}

func TestRelayPrintsFingerprintAndNodePinsIt(t *testing.T) {
	addr, dir, fp, _ := startTLSRelay(t)
	if fp == "" {
		t.Fatal("the relay did not print its certificate's fingerprint")
	}
	if fi, err := os.Stat(filepath.Join(dir, secret.CertFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("certificate file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	svc := echoServer(t)
	tokenFile := filepath.Join(dir, secret.TokenFileName)

	// Given on the command line, in openssl's spelling.
	nodeDir := t.TempDir()
	colons := strings.ToUpper(regexp.MustCompile(`(..)`).ReplaceAllString(fp, "$1:"))
	n := start(t, nil, "node", "--relay", addr, "--expose", "tcp:"+svc, "--token-file", tokenFile,
		"--relay-fingerprint", "SHA256 Fingerprint="+strings.TrimSuffix(colons, ":"), "--state", nodeDir)
	n.stdout.waitFor(t, exposedLine, 20*time.Second)
	servers, err := registry.OpenServers(filepath.Join(nodeDir, registry.ServerFileName))
	if err != nil {
		t.Fatal(err)
	}
	if sv, _ := servers.Get(addr); sv.Fingerprint != fp {
		t.Fatalf("the node stored %q for %s; want %s", sv.Fingerprint, addr, fp)
	}

	// A wrong one: the node exits with one line naming both fingerprints.
	wrong := strings.Repeat("0", 64)
	bad := start(t, nil, "node", "--relay", addr, "--expose", "tcp:"+svc, "--token-file", tokenFile,
		"--relay-fingerprint", wrong, "--state", t.TempDir())
	checkFatal(t, bad, fp)
	if !strings.Contains(bad.stderr.String(), wrong) {
		t.Error("the refusal does not say which fingerprint was expected")
	}
}

// Plaintext only when both sides say so; one side alone gets an error
// naming the flag.
func TestInsecurePlaintextBothSidesOrNeither(t *testing.T) {
	svc := echoServer(t)
	addr, dir, _, _ := startTLSRelay(t)
	tokenFile := filepath.Join(dir, secret.TokenFileName)
	plain := start(t, nil, "node", "--relay", addr, "--expose", "tcp:"+svc, "--token-file", tokenFile,
		"--insecure-plaintext", "--state", t.TempDir())
	checkFatal(t, plain, "--insecure-plaintext")

	paddr, pdir, fp, relay := startTLSRelay(t, "--insecure-plaintext")
	relay.stderr.waitFor(t, regexp.MustCompile("not encrypted"), 5*time.Second)
	if fp != "" {
		t.Fatalf("a plaintext relay printed a fingerprint:\n%s", relay.stderr.String())
	}
	ptoken := filepath.Join(pdir, secret.TokenFileName)
	tlsNode := start(t, nil, "node", "--relay", paddr, "--expose", "tcp:"+svc, "--token-file", ptoken, "--state", t.TempDir())
	checkFatal(t, tlsNode, "--insecure-plaintext")

	both := start(t, nil, "node", "--relay", paddr, "--expose", "tcp:"+svc, "--token-file", ptoken,
		"--insecure-plaintext", "--state", t.TempDir())
	both.stdout.waitFor(t, exposedLine, 20*time.Second)
	both.stderr.waitFor(t, regexp.MustCompile("not encrypted"), 5*time.Second) // a plaintext node warns
}

// The generated token appears in nothing we print or write, except its own
// file: not in logs (at debug level), errors, JSON files or --help.
func TestTokenAppearsNowhere(t *testing.T) {
	addr, dir, _, relay := startTLSRelay(t, "--log-level", "debug")
	tokenFile := filepath.Join(dir, secret.TokenFileName)
	token, err := secret.ReadToken(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	svc := echoServer(t)
	nodeDir := t.TempDir()
	n := start(t, nil, "node", "--relay", addr, "--expose", "tcp:"+svc, "--token-file", tokenFile,
		"--log-level", "debug", "--state", nodeDir)
	m := n.stdout.waitFor(t, exposedLine, 20*time.Second)
	// A refusal, a release and a wrong token, for their messages too.
	thief := start(t, nil, "node", "--relay", addr, "--release", "tcp:"+portOf(m[2]), "--token-file", tokenFile,
		"--log-level", "debug", "--state", t.TempDir())
	checkFatal(t, thief, "another node")
	wrongDir := t.TempDir()
	wrongFile := filepath.Join(wrongDir, "wrong.token")
	os.WriteFile(wrongFile, append(token[:len(token)-1:len(token)-1], 'x'), 0o600)
	wrong := start(t, nil, "node", "--relay", addr, "--expose", "tcp:"+svc, "--token-file", wrongFile, "--state", wrongDir)
	checkFatal(t, wrong, "token")
	help, _, _ := runCmd(t, "relay", "--help")
	for _, p := range []*proc{n, relay} { // stopped, so that all they print is in
		p.cmd.Process.Signal(os.Interrupt)
		if err := p.wait(t, 10*time.Second); err != nil {
			t.Errorf("%s exited with %v after SIGINT", p.cmd.Args[1], err)
		}
	}

	outputs := map[string]string{
		"relay stderr": relay.stderr.String(), "relay stdout": relay.stdout.String(),
		"node stderr": n.stderr.String(), "node stdout": n.stdout.String(),
		"thief stderr": thief.stderr.String(), "wrong-token node stderr": wrong.stderr.String(),
		"relay --help": help,
	}
	for _, d := range []string{dir, nodeDir, wrongDir} {
		filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() && path != tokenFile && path != wrongFile {
				b, _ := os.ReadFile(path)
				outputs[path] = string(b)
			}
			return nil
		})
	}
	if len(outputs) < 10 {
		t.Fatalf("checked only %d outputs and files; the state dirs should hold mapping, server, key and certificate files", len(outputs))
	}
	for what, text := range outputs {
		if bytes.Contains([]byte(text), token) {
			t.Errorf("the token appears in %s", what)
		}
	}
}

func portOf(hostPort string) string { return hostPort[strings.LastIndex(hostPort, ":")+1:] }

// --release gives a port up and exits 0.
func TestNodeReleaseCommand(t *testing.T) {
	addr, dir, fp, _ := startTLSRelay(t)
	tokenFile := filepath.Join(dir, secret.TokenFileName)
	svc := echoServer(t)
	nodeDir := t.TempDir()
	n := start(t, nil, "node", "--relay", addr, "--expose", "tcp:"+svc, "--token-file", tokenFile, "--state", nodeDir)
	m := n.stdout.waitFor(t, exposedLine, 20*time.Second)
	n.cmd.Process.Signal(os.Interrupt)
	n.wait(t, 10*time.Second)

	rel := start(t, nil, "node", "--relay", addr, "--release", "tcp:"+portOf(m[2]), "--token-file", tokenFile,
		"--relay-fingerprint", fp, "--state", nodeDir)
	if err := rel.wait(t, 20*time.Second); err != nil {
		t.Fatalf("--release: %v\n%s", err, rel.stderr.String())
	}
	maps, err := registry.OpenMappings(filepath.Join(dir, registry.MappingFileName))
	if err != nil {
		t.Fatal(err)
	}
	if ms := maps.List(); len(ms) != 0 {
		t.Fatalf("the relay still holds %+v after --release", ms)
	}
}

func TestSecurityFlagMistakes(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"relay", "--tls-cert", "c.pem"}, "--tls-key"},
		{[]string{"relay", "--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"}, "--tls-cert"},
		{[]string{"relay", "--insecure-plaintext", "--tls-cert", "c", "--tls-key", "k"}, "--insecure-plaintext"},
		{[]string{"relay", "--max-streams-per-session", "-1"}, "--max-streams-per-session"},
		{[]string{"node", "--relay", "127.0.0.1:1", "--expose", "tcp:22", "--relay-fingerprint", "abc"}, "--relay-fingerprint"},
		{[]string{"node", "--relay", "127.0.0.1:1", "--expose", "tcp:22", "--insecure-plaintext", "--relay-fingerprint", strings.Repeat("a", 64)}, "--insecure-plaintext"},
		{[]string{"node", "--relay", "127.0.0.1:1", "--release", "tcp:x"}, "--release"},
	}
	for _, tt := range tests {
		t.Setenv("P2PRC_TOKEN", "t")
		_, _, err := runCmd(t, append(tt.args, stateArgs(t, tt.args)...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want it to mention %q", tt.args, err, tt.want)
		}
	}
}
