package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The packaging an operator installs: the static binary and the image
// built over it, and the systemd units.

// repoRoot is where the Makefile is, from this package's directory.
const repoRoot = "../.."

// needTool returns the path of a tool a test needs; without it the test
// skips, except in CI (P2PRC_CI=1), which installs it, where it fails.
func needTool(t *testing.T, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	skipOrFail(t, name+" is not installed: "+why)
	return ""
}

// runTool runs a command with a time limit and returns its combined output.
func runTool(t *testing.T, limit time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// makeStatic runs `make static` into a fresh directory and returns it.
func makeStatic(t *testing.T) string {
	t.Helper()
	needTool(t, "make", "the static binary is built by `make static`")
	dir := t.TempDir()
	out, err := runTool(t, 5*time.Minute, "make", "-s", "-C", repoRoot, "static", "STATIC_DIR="+dir, "GO=go")
	if err != nil {
		t.Fatalf("make static: %v\n%s", err, out)
	}
	return dir
}

// `make static` builds a binary that needs no libc, so it runs FROM
// scratch, and the empty state dir the image's volume starts from.
func TestMakeStaticBuildsStaticBinary(t *testing.T) {
	dir := makeStatic(t)
	f, err := elf.Open(filepath.Join(dir, "p2prc"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Fatalf("bin/static/p2prc is dynamically linked (%v); it would not run FROM scratch", p.Type)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "state"))
	if err != nil || !fi.IsDir() {
		t.Fatalf("state dir beside the binary: %v, %v; want a directory", fi, err)
	}
	out, err := runTool(t, 10*time.Second, filepath.Join(dir, "p2prc"), "version")
	if err != nil || !strings.HasPrefix(out, "p2prc ") {
		t.Fatalf("p2prc version: %q, %v", out, err)
	}
}

// dockerfile returns the Dockerfile's instructions, one per line, without
// comments.
func dockerfile(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

// The image pulls nothing, runs as a user that is not root, and keeps its
// state in a volume.
func TestDockerfileIsScratchNonRootWithStateVolume(t *testing.T) {
	lines := dockerfile(t)
	want := map[string]*regexp.Regexp{
		"FROM scratch":             regexp.MustCompile(`^FROM scratch$`),
		"a numeric user, not 0":    regexp.MustCompile(`^USER [1-9][0-9]*(:[1-9][0-9]*)?$`),
		"a volume at /state":       regexp.MustCompile(`^VOLUME \["/state"\]$`),
		"P2PRC=/state":             regexp.MustCompile(`^ENV P2PRC=/state$`),
		"/state owned by 65532":    regexp.MustCompile(`^COPY --chown=65532:65532 state /state$`),
		"the binary as ENTRYPOINT": regexp.MustCompile(`^ENTRYPOINT \["/p2prc"\]$`),
	}
	for what, re := range want {
		found := false
		for _, l := range lines {
			found = found || re.MatchString(l)
		}
		if !found {
			t.Errorf("the Dockerfile lacks %s (%v):\n%s", what, re, strings.Join(lines, "\n"))
		}
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "FROM ") && l != "FROM scratch" || strings.HasPrefix(l, "RUN ") || strings.HasPrefix(l, "ADD ") {
			t.Errorf("%q: the image must build from the static binary alone, pulling and running nothing", l)
		}
	}
}

// The image builds and runs where a docker daemon answers. CI has none:
// this is the one test allowed to skip there.
func TestDockerImageBuildsAndRunsRelay(t *testing.T) {
	docker, err := exec.LookPath("docker")
	why := "no docker client on PATH"
	if err == nil {
		var out string
		if out, err = runTool(t, 15*time.Second, docker, "version", "--format", "{{.Server.Version}}"); err != nil {
			why = strings.TrimSpace(out)
		}
	}
	if err != nil {
		t.Skipf("no docker daemon answers (%s): the image is built and run where one does; CI has none, and this is the one test allowed to skip there", why)
	}
	dir := makeStatic(t)
	var b [4]byte
	rand.Read(b[:])
	tag := "p2prc-test:" + hex.EncodeToString(b[:])
	name := "p2prc-test-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		runTool(t, time.Minute, docker, "rm", "-f", "-v", name)
		runTool(t, time.Minute, docker, "rmi", "-f", tag)
	})
	if out, err := runTool(t, 5*time.Minute, docker, "build", "-f", "Dockerfile", "-t", tag, dir); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	if out, err := runTool(t, time.Minute, docker, "run", "--rm", "--network", "none", tag, "version"); err != nil || !strings.HasPrefix(out, "p2prc ") {
		t.Fatalf("docker run IMAGE version: %q, %v", out, err)
	}
	if out, err := runTool(t, time.Minute, docker, "image", "inspect", "--format", "{{.Config.User}}", tag); err != nil || strings.TrimSpace(out) != "65532:65532" {
		t.Fatalf("the image's user is %q (%v), want 65532:65532", out, err)
	}
	// A relay, not root, writes its token and mapping file into the volume.
	if out, err := runTool(t, time.Minute, docker, "run", "-d", "--network", "none", "--name", name, tag,
		"relay", "--listen", "127.0.0.1:8700", "--public-host", "127.0.0.1", "--ports", "30000-30009"); err != nil {
		t.Fatalf("docker run relay: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := runTool(t, 15*time.Second, docker, "logs", name)
		if strings.Contains(out, "relay ready") && strings.Contains(out, "/state/relay.token") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay in the container did not get ready with its token in /state:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err := runTool(t, time.Minute, docker, "exec", name, "/p2prc", "mappings"); err != nil || !strings.Contains(out, "no mappings") {
		t.Fatalf("p2prc mappings in the container: %q, %v", out, err)
	}
}

// The systemd units parse, point at what exists, and stay hardened.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze := needTool(t, "systemd-analyze", "the unit files are checked with systemd-analyze verify (Debian: apt-get install systemd)")
	bin := buildBinary(t)
	units, _ := filepath.Glob("systemd/*.service")
	if len(units) != 2 {
		t.Fatalf("units %v, want a relay's and a node's", units)
	}
	dir := t.TempDir()
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, must := range []string{"Restart=on-failure", "StateDirectory=p2prc-", "DynamicUser=yes", "NoNewPrivileges=yes",
			"ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet=\n", "--state %S/p2prc-"} {
			if !strings.Contains(text, must) {
				t.Errorf("%s lacks %q", u, strings.TrimSpace(must))
			}
		}
		// verify checks that ExecStart's binary exists: point it at the one just built.
		local := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(local, []byte(strings.ReplaceAll(text, "/usr/local/bin/p2prc", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := runTool(t, time.Minute, analyze, "verify", "--man=no", local)
		var ours []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, local) {
				ours = append(ours, l)
			}
		}
		if err != nil || len(ours) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, strings.Join(ours, "\n"))
		}
		// An exposure of at most 2.5 of 10 ("OK"): the hardening is in place.
		if out, err := runTool(t, time.Minute, analyze, "security", "--offline=true", "--threshold=25", local); err != nil {
			t.Errorf("systemd-analyze security %s: %v\n%s", u, err, out)
		}
	}
}
